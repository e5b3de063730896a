"""Downsample2D (strided conv or 2x2 average pool) and Upsample2D (nearest x2, then conv)."""
import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn

from .. import ops
from .layers import Conv2d


def avg_pool_2x2(x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b c h2 w2"]:
    """2x2 average pooling, stride 2 (odd trailing rows/columns dropped, as torch's avg_pool2d)."""
    b, c, h, w = x.shape
    x = x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(b, c, h // 2, 2, w // 2, 2)
    return x.mean(axis=(3, 5))


class Downsample2D(nn.Cell):
    """Halve h, w: 3x3 stride-2 conv (padding 0 pads right/bottom by one first, as diffusers) or avg-pool."""

    def __init__(self, channels: int, use_conv: bool = False, out_channels: int = None, padding: int = 1,
                 kernel_size: int = 3, bias: bool = True, dtype=ms.float32):
        super().__init__()
        out_channels = out_channels or channels
        if not use_conv and out_channels != channels:
            raise ValueError("Downsample2D: average pooling cannot change the channel count")
        self.padding = padding
        self.conv = Conv2d(channels, out_channels, kernel_size, stride=2, padding=padding, bias=bias,
                           dtype=dtype) if use_conv else None

    def construct(self, x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b o h2 w2"]:
        if self.conv is None:
            return avg_pool_2x2(x)
        if self.padding == 0:
            x = ops.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample2D(nn.Cell):
    """Nearest-neighbour upsampling by 2 (or to `output_size`), then an optional 3x3 conv."""

    def __init__(self, channels: int, use_conv: bool = False, out_channels: int = None, kernel_size: int = 3,
                 bias: bool = True, dtype=ms.float32):
        super().__init__()
        out_channels = out_channels or channels
        self.conv = Conv2d(channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias,
                           dtype=dtype) if use_conv else None

    def construct(self, x: Float[Tensor, "b c h w"], output_size=None) -> Float[Tensor, "b o h2 w2"]:
        if output_size is None:
            x = ops.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = ops.interpolate(x, size=output_size, mode="nearest")
        if self.conv is not None:
            x = self.conv(x)
        return x
