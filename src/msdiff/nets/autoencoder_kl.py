"""AutoencoderKL (SD 1.x/2.x/XL VAE): encode to a diagonal Gaussian, decode latents, tiled variants for large images.

`encode(x) -> (mean, logvar)` and `decode(z) -> x` are methods; `construct` is `decode`. Sampling
is the pure `sample_latent(mean, logvar, noise)`. Scale latents with `scaling_factor` (and
`shift_factor` where set) outside the VAE. `force_upcast` is recorded in the config: checkpoints
with it set (SD-XL's VAE) overflow in fp16, so build such a VAE with dtype float32.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .. import ops
from ..blocks.layers import Conv2d, GroupNorm
from ..blocks.vae_blocks import DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D
from ._config import read_config
from ._keys import modern_attention_key


@dataclass(frozen=True)
class AutoencoderKLConfig:
    """diffusers' AutoencoderKL config fields (diffusers' defaults)."""

    in_channels: int = 3
    out_channels: int = 3
    down_block_types: Tuple[str, ...] = ("DownEncoderBlock2D",)
    up_block_types: Tuple[str, ...] = ("UpDecoderBlock2D",)
    block_out_channels: Tuple[int, ...] = (64,)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 32
    sample_size: int = 32
    scaling_factor: float = 0.18215
    shift_factor: Optional[float] = None
    latents_mean: Optional[Tuple[float, ...]] = None
    latents_std: Optional[Tuple[float, ...]] = None
    force_upcast: bool = True
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True


_FIXED = {"act_fn": ("silu", "swish")}


def config_from_diffusers(d: dict) -> AutoencoderKLConfig:
    """AutoencoderKLConfig from a diffusers config.json dict; ValueError names unsupported keys/values."""
    cfg = read_config(AutoencoderKLConfig, d, "AutoencoderKL", _FIXED)
    bad = [t for t in cfg.down_block_types if t != "DownEncoderBlock2D"]
    bad += [t for t in cfg.up_block_types if t != "UpDecoderBlock2D"]
    if bad:
        raise ValueError(f"AutoencoderKL: block types {bad} are not supported by msdiff")
    if isinstance(cfg.sample_size, tuple) and len(set(cfg.sample_size)) != 1:
        raise ValueError(f"AutoencoderKL: non-square sample_size {cfg.sample_size} is not supported by msdiff")
    return cfg


def map_weights(key: str) -> str:
    """diffusers state-dict key -> msdiff parameter name: the trees match; pre-0.14 attention names
    (query/key/value/proj_attn) are renamed as diffusers does on load."""
    return modern_attention_key(key)


class Encoder(nn.Cell):
    """conv_in, DownEncoderBlock2Ds, attention mid-block, GroupNorm-SiLU-conv_out to 2*latent channels."""

    def __init__(self, c: AutoencoderKLConfig, dtype=ms.float32):
        super().__init__()
        boc, groups = c.block_out_channels, c.norm_num_groups
        self.conv_in = Conv2d(c.in_channels, boc[0], 3, padding=1, dtype=dtype)
        self.down_blocks = nn.CellList([
            DownEncoderBlock2D(boc[max(i - 1, 0)], boc[i], c.layers_per_block, 1e-6, groups,
                               add_downsample=i < len(boc) - 1, downsample_padding=0, dtype=dtype)
            for i in range(len(boc))])
        self.mid_block = UNetMidBlock2D(boc[-1], None, resnet_eps=1e-6, resnet_groups=groups,
                                        add_attention=c.mid_block_add_attention, attention_head_dim=boc[-1],
                                        dtype=dtype)
        self.conv_norm_out = GroupNorm(groups, boc[-1], eps=1e-6, dtype=dtype)
        self.conv_out = Conv2d(boc[-1], 2 * c.latent_channels, 3, padding=1, dtype=dtype)

    def construct(self, x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b l h2 w2"]:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(ops.silu(self.conv_norm_out(x)))


class Decoder(nn.Cell):
    """conv_in, attention mid-block, UpDecoderBlock2Ds, GroupNorm-SiLU-conv_out to image channels."""

    def __init__(self, c: AutoencoderKLConfig, dtype=ms.float32):
        super().__init__()
        rev, groups = tuple(reversed(c.block_out_channels)), c.norm_num_groups
        self.conv_in = Conv2d(c.latent_channels, rev[0], 3, padding=1, dtype=dtype)
        self.mid_block = UNetMidBlock2D(rev[0], None, resnet_eps=1e-6, resnet_groups=groups,
                                        add_attention=c.mid_block_add_attention, attention_head_dim=rev[0],
                                        dtype=dtype)
        self.up_blocks = nn.CellList([
            UpDecoderBlock2D(rev[max(i - 1, 0)], rev[i], c.layers_per_block + 1, 1e-6, groups,
                             add_upsample=i < len(rev) - 1, dtype=dtype)
            for i in range(len(rev))])
        self.conv_norm_out = GroupNorm(groups, rev[-1], eps=1e-6, dtype=dtype)
        self.conv_out = Conv2d(rev[-1], c.out_channels, 3, padding=1, dtype=dtype)

    def construct(self, z: Float[Tensor, "b l h w"]) -> Float[Tensor, "b c h2 w2"]:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(ops.silu(self.conv_norm_out(x)))


class AutoencoderKL(nn.Cell):
    """SD's KL autoencoder: encode(x) -> (mean, logvar), decode(z) -> x; construct(z) == decode(z)."""

    def __init__(self, config: AutoencoderKLConfig, dtype=ms.float32):
        super().__init__()
        c = self.config = config
        self.compute_dtype = dtype
        self.scaling_factor = c.scaling_factor
        self.shift_factor = c.shift_factor
        self.force_upcast = c.force_upcast
        self.encoder = Encoder(c, dtype)
        self.decoder = Decoder(c, dtype)
        lc = c.latent_channels
        self.quant_conv = Conv2d(2 * lc, 2 * lc, 1, dtype=dtype) if c.use_quant_conv else None
        self.post_quant_conv = Conv2d(lc, lc, 1, dtype=dtype) if c.use_post_quant_conv else None

    def moments(self, x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b l2 h2 w2"]:
        """Encoder output after quant_conv: mean and raw logvar stacked on the channel axis."""
        m = self.encoder(x.astype(self.compute_dtype))
        return self.quant_conv(m) if self.quant_conv is not None else m

    def encode(self, x: Float[Tensor, "b c h w"]):
        """(mean, logvar) of the latent posterior; logvar clamped to [-30, 20] as diffusers does."""
        return split_moments(self.moments(x))

    def decode(self, z: Float[Tensor, "b l h w"]) -> Float[Tensor, "b c h2 w2"]:
        """Image from (unscaled) latents."""
        z = z.astype(self.compute_dtype)
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)

    def construct(self, z: Float[Tensor, "b l h w"]) -> Float[Tensor, "b c h2 w2"]:
        return self.decode(z)


def split_moments(moments: Float[Tensor, "b l2 h w"]):
    """Split stacked moments into (mean, logvar), clamping logvar to [-30, 20] (DiagonalGaussianDistribution)."""
    mean, logvar = moments.chunk(2, axis=1)
    return mean, mops.clamp(logvar, -30.0, 20.0)


def sample_latent(mean: Float[Tensor, "b l h w"], logvar: Float[Tensor, "b l h w"],
                  noise: Float[Tensor, "b l h w"]) -> Float[Tensor, "b l h w"]:
    """Reparameterised draw mean + exp(logvar / 2) * noise, with the caller's noise."""
    return mean + mops.exp(0.5 * logvar) * noise.astype(mean.dtype)


# Tiling (diffusers' enable_tiling): overlapping tiles, each blended linearly into its upper and left
# neighbours over `blend` rows/columns, then cropped to the tile stride.

def _blend_weights(extent: int, dtype, shape):
    """(1 - y/extent, y/extent) rounded from float64 once, as torch does with Python-float scalars."""
    w = np.arange(extent, dtype=np.float64) / extent
    return (Tensor((1 - w).astype(np.float32)).astype(dtype).reshape(shape),
            Tensor(w.astype(np.float32)).astype(dtype).reshape(shape))


def _blend_v(a: Tensor, b: Tensor, extent: int) -> Tensor:
    extent = min(a.shape[2], b.shape[2], extent)
    if extent == 0:
        return b
    wa, wb = _blend_weights(extent, b.dtype, (1, 1, -1, 1))
    head = a[:, :, a.shape[2] - extent:, :] * wa + b[:, :, :extent, :] * wb
    return mops.cat((head, b[:, :, extent:, :]), axis=2)


def _blend_h(a: Tensor, b: Tensor, extent: int) -> Tensor:
    extent = min(a.shape[3], b.shape[3], extent)
    if extent == 0:
        return b
    wa, wb = _blend_weights(extent, b.dtype, (1, 1, 1, -1))
    head = a[:, :, :, a.shape[3] - extent:] * wa + b[:, :, :, :extent] * wb
    return mops.cat((head, b[:, :, :, extent:]), axis=3)


def _tiled(fn, x: Tensor, tile_in: int, tile_out: int, overlap_factor: float) -> Tensor:
    stride = int(tile_in * (1 - overlap_factor))
    extent = int(tile_out * overlap_factor)
    limit = tile_out - extent
    rows = []
    for i in range(0, x.shape[2], stride):
        row = []
        for j in range(0, x.shape[3], stride):
            tile = fn(x[:, :, i:i + tile_in, j:j + tile_in])
            if rows:
                tile = _blend_v(rows[-1][len(row)], tile, extent)
            if row:
                tile = _blend_h(row[-1], tile, extent)
            row.append(tile)
        rows.append(row)
    return mops.cat([mops.cat([t[:, :, :limit, :limit] for t in row], axis=3) for row in rows], axis=2)


def _tile_sizes(vae: AutoencoderKL, tile_sample_min_size):
    size = tile_sample_min_size or vae.config.sample_size
    size = size[0] if isinstance(size, tuple) else size
    return size, int(size / 2 ** (len(vae.config.block_out_channels) - 1))


def tiled_encode(vae: AutoencoderKL, x: Float[Tensor, "b c h w"], tile_sample_min_size: int = None,
                 tile_overlap_factor: float = 0.25):
    """(mean, logvar) encoded tile by tile with overlap blending (diffusers' tiled_encode; tiles default to
    config.sample_size)."""
    sample_tile, latent_tile = _tile_sizes(vae, tile_sample_min_size)
    moments = _tiled(vae.moments, x.astype(vae.compute_dtype), sample_tile, latent_tile, tile_overlap_factor)
    return split_moments(moments)


def tiled_decode(vae: AutoencoderKL, z: Float[Tensor, "b l h w"], tile_sample_min_size: int = None,
                 tile_overlap_factor: float = 0.25) -> Float[Tensor, "b c h2 w2"]:
    """Image decoded tile by tile with overlap blending (diffusers' tiled_decode)."""
    sample_tile, latent_tile = _tile_sizes(vae, tile_sample_min_size)
    return _tiled(vae.decode, z.astype(vae.compute_dtype), latent_tile, sample_tile, tile_overlap_factor)
