"""Blocks of diffusers' UNet2DModel that SD's UNet does not use: attention down/up blocks, Fourier time
features, and the FIR resamplers of the score-SDE / NCSN++ family (FIR math in fp32 inside msdiff.ops).

AttnDownBlock2D / AttnUpBlock2D follow the call conventions of `unet_2d_blocks` (down: (x, temb) ->
(x, skips); up: (x, skips, temb) -> x) so UNet2DModel drives every block type in one loop.
"""
import math

import mindspore as ms
from jaxtyping import Float
from mindspore import Parameter, Tensor, nn
from mindspore import ops as mops
from mindspore.common.initializer import Normal, initializer

from .. import ops
from .attention import Attention
from .layers import Conv2d
from .resnet import ResnetBlock2D
from .unet_2d_blocks import DownBlock2D, UpBlock2D


def _spatial_attentions(num_layers: int, channels: int, head_dim: int, groups: int, eps: float, dtype,
                        output_scale_factor: float = 1.0) -> nn.CellList:
    """The group-normed residual self-attentions of the deprecated attention block (bias on q, k, v, out)."""
    if head_dim is None:
        head_dim = channels
    return nn.CellList([
        Attention(channels, heads=channels // head_dim, dim_head=head_dim, bias=True, norm_num_groups=groups,
                  eps=eps, residual_connection=True, rescale_output_factor=output_scale_factor, dtype=dtype)
        for _ in range(num_layers)])


class AttnDownBlock2D(DownBlock2D):
    """DownBlock2D with a spatial self-attention after each resnet (diffusers' AttnDownBlock2D)."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int = 1,
                 resnet_eps: float = 1e-6, resnet_time_scale_shift: str = "default", resnet_groups: int = 32,
                 attention_head_dim: int = 1, add_downsample: bool = True, downsample_padding: int = 1,
                 dtype=ms.float32, downsample_type: str = "conv"):
        super().__init__(in_channels, out_channels, temb_channels, num_layers, resnet_eps, resnet_time_scale_shift,
                         resnet_groups, add_downsample, downsample_padding, dtype, downsample_type)
        self.attentions = _spatial_attentions(num_layers, out_channels, attention_head_dim, resnet_groups,
                                              resnet_eps, dtype)

    def _attend(self, i: int, x: Tensor, context: Tensor) -> Tensor:
        return self.attentions[i](x)


class AttnUpBlock2D(UpBlock2D):
    """UpBlock2D with a spatial self-attention after each resnet (diffusers' AttnUpBlock2D)."""

    def __init__(self, in_channels: int, prev_output_channel: int, out_channels: int, temb_channels: int,
                 num_layers: int = 1, resnet_eps: float = 1e-6, resnet_time_scale_shift: str = "default",
                 resnet_groups: int = 32, attention_head_dim: int = 1, add_upsample: bool = True,
                 dtype=ms.float32, upsample_type: str = "conv"):
        super().__init__(in_channels, prev_output_channel, out_channels, temb_channels, num_layers, resnet_eps,
                         resnet_time_scale_shift, resnet_groups, add_upsample, dtype, upsample_type)
        self.attentions = _spatial_attentions(num_layers, out_channels, attention_head_dim, resnet_groups,
                                              resnet_eps, dtype)

    def _attend(self, i: int, x: Tensor, context: Tensor) -> Tensor:
        return self.attentions[i](x)


class GaussianFourierProjection(nn.Cell):
    """Random Fourier features of log(sigma) (Song et al. 2021, NCSN++), in fp32; `weight` is frozen."""

    def __init__(self, embedding_size: int = 256, scale: float = 1.0, log: bool = True,
                 flip_sin_to_cos: bool = False):
        super().__init__()
        self.log = log
        self.flip_sin_to_cos = flip_sin_to_cos
        self.weight = Parameter(initializer(Normal(scale), (embedding_size,), ms.float32), name="weight",
                                requires_grad=False)

    def construct(self, x: Float[Tensor, "b"]) -> Float[Tensor, "b c2"]:
        x = x.astype(ms.float32)
        if self.log:
            x = mops.log(x)
        proj = x.reshape(-1, 1) * self.weight.astype(ms.float32).reshape(1, -1) * 2 * math.pi
        sin, cos = mops.sin(proj), mops.cos(proj)
        return mops.cat((cos, sin), axis=-1) if self.flip_sin_to_cos else mops.cat((sin, cos), axis=-1)


FIR_KERNEL = (1, 3, 3, 1)


class _FirResample2D(nn.Cell):
    """FIR resampling by 2 (`_fir`), optionally fused with a 3x3 conv `Conv2d_0`; fp32 inside."""

    def __init__(self, channels: int, out_channels: int = None, use_conv: bool = False, fir_kernel=FIR_KERNEL,
                 dtype=ms.float32):
        super().__init__()
        self.fir_kernel = tuple(fir_kernel)
        self.Conv2d_0 = Conv2d(channels, out_channels or channels, 3, padding=1, dtype=dtype) if use_conv else None

    def construct(self, x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b o h2 w2"]:
        if self.Conv2d_0 is None:
            return self._fir(x, None)
        y = self._fir(x, self.Conv2d_0.weight)
        return y + self.Conv2d_0.bias.astype(y.dtype).reshape(1, -1, 1, 1)


class FirUpsample2D(_FirResample2D):
    """x2 FIR upsampling (Karras et al. 2019 / NCSN++), optionally fused with a 3x3 conv; fp32 inside."""

    def _fir(self, x, weight):
        return ops.upsample_fir(x, weight, kernel=self.fir_kernel, factor=2)


class FirDownsample2D(_FirResample2D):
    """/2 FIR downsampling, optionally fused with a stride-2 3x3 conv; fp32 inside."""

    def _fir(self, x, weight):
        return ops.downsample_fir(x, weight, kernel=self.fir_kernel, factor=2)


class FirUpResnetBlock2D(ResnetBlock2D):
    """diffusers' ResnetBlock2D(up=True, kernel="fir"): hidden and shortcut FIR-upsampled after norm1."""

    def _resample(self, h: Tensor, x: Tensor):
        return (ops.upsample_fir(h, kernel=FIR_KERNEL, factor=2), ops.upsample_fir(x, kernel=FIR_KERNEL, factor=2))


class FirDownResnetBlock2D(ResnetBlock2D):
    """diffusers' ResnetBlock2D(down=True, kernel="fir"): hidden and shortcut FIR-downsampled after norm1."""

    def _resample(self, h: Tensor, x: Tensor):
        return (ops.downsample_fir(h, kernel=FIR_KERNEL, factor=2),
                ops.downsample_fir(x, kernel=FIR_KERNEL, factor=2))
