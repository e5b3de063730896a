"""T2IAdapter (Mou et al. 2023, "T2I-Adapter: Learning Adapters to Dig out More Controllable Ability for
Text-to-Image Diffusion Models"): a small conv net turning a condition image into one feature map per UNet
down block, added inside the frozen UNet's encoder (diffusers' T2IAdapter, adapter types "full_adapter" (SD),
"full_adapter_xl" (SD-XL) and "light_adapter").

The condition image is pixel-unshuffled (space to depth) by `downscale_factor`, then passes through a stack of
blocks of residual conv pairs, some behind a 2x2 average pool; each block's output is one feature map. The
parameter tree has diffusers' names (`adapter.body.0.resnets.0.block1.weight`), so `map_weights` is the identity.
"""
from dataclasses import dataclass
from typing import Tuple

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .. import ops
from ..blocks.layers import Conv2d
from ._config import read_config

ADAPTER_TYPES = ("full_adapter", "full_adapter_xl", "light_adapter")


@dataclass(frozen=True)
class T2IAdapterConfig:
    """The fields of diffusers' T2IAdapter config (diffusers' defaults)."""

    in_channels: int = 3
    channels: Tuple[int, ...] = (320, 640, 1280, 1280)
    num_res_blocks: int = 2
    downscale_factor: int = 8
    adapter_type: str = "full_adapter"


def config_from_diffusers(d: dict) -> T2IAdapterConfig:
    """T2IAdapterConfig from a diffusers config.json dict; ValueError names unsupported keys/values."""
    cfg = read_config(T2IAdapterConfig, d, "T2IAdapter", {"adapter_type": ADAPTER_TYPES})
    if not cfg.channels:
        raise ValueError("T2IAdapter: channels must not be empty")
    if cfg.adapter_type == "light_adapter" and any(c < 4 for c in cfg.channels):
        raise ValueError(f"T2IAdapter: light_adapter needs channels >= 4 (it works at channels // 4), "
                         f"got {cfg.channels}")
    return cfg


def map_weights(key: str) -> str:
    """diffusers state-dict key -> msdiff parameter name (identity: the trees match)."""
    return key


# Kernels ------------------------------------------------------------------------------------------

def pixel_unshuffle(x: Float[Tensor, "b c H W"], r: int) -> Float[Tensor, "b c*r*r H/r W/r"]:
    """torch.nn.PixelUnshuffle: channel c*r*r + i*r + j of the output holds input pixel (h*r + i, w*r + j)."""
    b, c, h, w = x.shape
    if h % r or w % r:
        raise ValueError(f"T2IAdapter: the condition image size {h} x {w} is not divisible by its "
                         f"downscale_factor {r}")
    x = x.reshape(b, c, h // r, r, w // r, r).transpose(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * r * r, h // r, w // r)


def avg_pool_2x2(x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b c h2 w2"]:
    """torch AvgPool2d(2, 2, ceil_mode=True): 2x2 means; on an odd edge the last window averages what it covers."""
    b, c, h, w = x.shape
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    if h % 2 == 0 and w % 2 == 0:
        return x.reshape(b, c, h2, 2, w2, 2).mean(axis=(3, 5))
    x = ops.pad(x, (0, 2 * w2 - w, 0, 2 * h2 - h))
    rows = np.minimum(2, h - 2 * np.arange(h2))
    cols = np.minimum(2, w - 2 * np.arange(w2))
    count = Tensor((rows[:, None] * cols[None, :]).astype(np.float32)).astype(x.dtype)
    return x.reshape(b, c, h2, 2, w2, 2).sum(axis=(3, 5)) / count


# Layers -------------------------------------------------------------------------------------------

class AdapterResnetBlock(nn.Cell):
    """x + conv1x1(relu(conv3x3(x))) (the full adapters' residual block)."""

    second_kernel = 1

    def __init__(self, channels: int, dtype=ms.float32):
        super().__init__()
        k = self.second_kernel
        self.block1 = Conv2d(channels, channels, 3, padding=1, dtype=dtype)
        self.block2 = Conv2d(channels, channels, k, padding=k // 2, dtype=dtype)

    def construct(self, x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b c h w"]:
        return self.block2(mops.relu(self.block1(x))) + x


class LightAdapterResnetBlock(AdapterResnetBlock):
    """x + conv3x3(relu(conv3x3(x))) (the light adapter's residual block)."""

    second_kernel = 3


class AdapterBlock(nn.Cell):
    """Optional 2x2 average pool, a 1x1 in_conv when the channel count changes, then residual blocks."""

    def __init__(self, in_channels: int, out_channels: int, num_res_blocks: int, down: bool = False,
                 dtype=ms.float32):
        super().__init__()
        self.down = down
        self.in_conv = Conv2d(in_channels, out_channels, 1, dtype=dtype) if in_channels != out_channels else None
        self.resnets = nn.CellList([AdapterResnetBlock(out_channels, dtype) for _ in range(num_res_blocks)])

    def construct(self, x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b d h2 w2"]:
        if self.down:
            x = avg_pool_2x2(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        for block in self.resnets:
            x = block(x)
        return x


class LightAdapterBlock(nn.Cell):
    """Optional 2x2 average pool, 1x1 in_conv to out_channels // 4, residual blocks there, 1x1 out_conv."""

    def __init__(self, in_channels: int, out_channels: int, num_res_blocks: int, down: bool = False,
                 dtype=ms.float32):
        super().__init__()
        mid = out_channels // 4
        self.down = down
        self.in_conv = Conv2d(in_channels, mid, 1, dtype=dtype)
        self.resnets = nn.CellList([LightAdapterResnetBlock(mid, dtype) for _ in range(num_res_blocks)])
        self.out_conv = Conv2d(mid, out_channels, 1, dtype=dtype)

    def construct(self, x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b d h2 w2"]:
        if self.down:
            x = avg_pool_2x2(x)
        x = self.in_conv(x)
        for block in self.resnets:
            x = block(x)
        return self.out_conv(x)


def _body(c: T2IAdapterConfig, dtype) -> list:
    """The feature blocks of each adapter type, in diffusers' order."""
    ch, n = c.channels, c.num_res_blocks
    unshuffled = c.in_channels * c.downscale_factor ** 2
    if c.adapter_type == "full_adapter":
        return [AdapterBlock(ch[0], ch[0], n, dtype=dtype)] + \
            [AdapterBlock(ch[i - 1], ch[i], n, down=True, dtype=dtype) for i in range(1, len(ch))]
    if c.adapter_type == "full_adapter_xl":  # block 1 changes channels, only block 2 downsamples
        return [AdapterBlock(ch[i - 1] if i in (1, 2) else ch[i], ch[i], n, down=i == 2, dtype=dtype)
                for i in range(len(ch))]
    return [LightAdapterBlock(unshuffled, ch[0], n, dtype=dtype)] + \
        [LightAdapterBlock(ch[i], ch[i + 1], n, down=True, dtype=dtype) for i in range(len(ch) - 1)] + \
        [LightAdapterBlock(ch[-1], ch[-1], n, down=True, dtype=dtype)]


class AdapterFeatures(nn.Cell):
    """Pixel unshuffle, conv_in (full adapters), then one feature map per body block."""

    def __init__(self, c: T2IAdapterConfig, dtype=ms.float32):
        super().__init__()
        self.factor = c.downscale_factor
        unshuffled = c.in_channels * c.downscale_factor ** 2
        full = c.adapter_type != "light_adapter"
        self.conv_in = Conv2d(unshuffled, c.channels[0], 3, padding=1, dtype=dtype) if full else None
        self.body = nn.CellList(_body(c, dtype))

    def construct(self, x: Float[Tensor, "b c H W"]) -> tuple:
        x = pixel_unshuffle(x, self.factor)
        if self.conv_in is not None:
            x = self.conv_in(x)
        features = ()
        for block in self.body:
            x = block(x)
            features = features + (x,)
        return features


class T2IAdapter(nn.Cell):
    """adapter(image in [0, 1], (b, in_channels, H, W)) -> tuple of feature maps, the UNet's
    down_intrablock_additional_residuals (H and W divisible by total_downscale_factor for the UNet to match)."""

    net_name = "T2IAdapter"

    def __init__(self, config: T2IAdapterConfig, dtype=ms.float32):
        super().__init__()
        self.config = config
        self.compute_dtype = dtype
        self.adapter = AdapterFeatures(config, dtype)

    @property
    def downscale_factor(self) -> int:
        """The pixel-unshuffle factor: input height and width must be multiples of it."""
        return self.config.downscale_factor

    @property
    def total_downscale_factor(self) -> int:
        """Input size / size of the smallest feature map."""
        c = self.config
        halvings = {"full_adapter": len(c.channels) - 1, "full_adapter_xl": 1, "light_adapter": len(c.channels)}
        return c.downscale_factor * 2 ** halvings[c.adapter_type]

    def construct(self, x: Float[Tensor, "b c H W"]) -> tuple:
        if x.shape[1] != self.config.in_channels:
            raise ValueError(f"T2IAdapter: takes {self.config.in_channels}-channel images, got {x.shape[1]} channels")
        return self.adapter(x.astype(self.compute_dtype))

