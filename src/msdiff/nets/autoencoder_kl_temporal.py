"""AutoencoderKLTemporalDecoder: Stable Video Diffusion's VAE (SD's KL encoder, a decoder with temporal layers).

`encode(x) -> (mean, logvar)` per image, as AutoencoderKL; `decode(z, num_frames)` decodes frame batches
[b * f, l, h, w] of whole videos (chunk a long video outside, diffusers' `decode_chunk_size`). The VAE
runs in fp32 by default (config force_upcast).
"""
from dataclasses import dataclass
from typing import Tuple

import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .. import ops
from ..blocks.layers import Conv2d, GroupNorm
from ..blocks.temporal import Conv3d, to_frames, to_video
from ..blocks.unet_spatio_temporal_blocks import MidBlockTemporalDecoder, UpBlockTemporalDecoder
from ._config import read_config
from .autoencoder_kl import AutoencoderKLConfig, Encoder, split_moments


@dataclass(frozen=True)
class AutoencoderKLTemporalDecoderConfig:
    """diffusers' AutoencoderKLTemporalDecoder config fields (its defaults)."""

    in_channels: int = 3
    out_channels: int = 3
    down_block_types: Tuple[str, ...] = ("DownEncoderBlock2D",)
    block_out_channels: Tuple[int, ...] = (64,)
    layers_per_block: int = 1
    latent_channels: int = 4
    sample_size: int = 32
    scaling_factor: float = 0.18215
    force_upcast: bool = True


def config_from_diffusers(d: dict) -> AutoencoderKLTemporalDecoderConfig:
    """AutoencoderKLTemporalDecoderConfig from a diffusers config.json dict; ValueError names unsupported values."""
    cfg = read_config(AutoencoderKLTemporalDecoderConfig, d, "AutoencoderKLTemporalDecoder")
    bad = [t for t in cfg.down_block_types if t != "DownEncoderBlock2D"]
    if bad:
        raise ValueError(f"AutoencoderKLTemporalDecoder: block types {bad} are not supported by msdiff")
    if len(cfg.down_block_types) != len(cfg.block_out_channels):
        raise ValueError("AutoencoderKLTemporalDecoder: down_block_types and block_out_channels differ in length")
    return cfg


def map_weights(key: str) -> str:
    """diffusers state-dict key -> msdiff parameter name (identity: the trees match)."""
    return key


class TemporalDecoder(nn.Cell):
    """conv_in, MidBlockTemporalDecoder, UpBlockTemporalDecoders, GroupNorm-SiLU-conv_out, then a 3x1x1
    `time_conv_out` over frames."""

    def __init__(self, c: AutoencoderKLTemporalDecoderConfig, dtype=ms.float32):
        super().__init__()
        boc, rev = c.block_out_channels, tuple(reversed(c.block_out_channels))
        self.conv_in = Conv2d(c.latent_channels, boc[-1], 3, padding=1, dtype=dtype)
        self.mid_block = MidBlockTemporalDecoder(boc[-1], boc[-1], attention_head_dim=boc[-1],
                                                 num_layers=c.layers_per_block, dtype=dtype)
        self.up_blocks = nn.CellList([
            UpBlockTemporalDecoder(rev[max(i - 1, 0)], rev[i], c.layers_per_block + 1, add_upsample=i < len(rev) - 1,
                                   dtype=dtype)
            for i in range(len(rev))])
        self.conv_norm_out = GroupNorm(32, boc[0], eps=1e-6, dtype=dtype)
        self.conv_out = Conv2d(boc[0], c.out_channels, 3, padding=1, dtype=dtype)
        self.time_conv_out = Conv3d(c.out_channels, c.out_channels, (3, 1, 1), padding=(1, 0, 0), dtype=dtype)

    def construct(self, z: Float[Tensor, "bf l h w"],
                  image_only_indicator: Float[Tensor, "b f"]) -> Float[Tensor, "bf c h2 w2"]:
        x = self.mid_block(self.conv_in(z), image_only_indicator)
        for block in self.up_blocks:
            x = block(x, image_only_indicator)
        x = self.conv_out(ops.silu(self.conv_norm_out(x)))
        return to_frames(self.time_conv_out(to_video(x, image_only_indicator.shape[-1])))


class AutoencoderKLTemporalDecoder(nn.Cell):
    """SVD's VAE: encode(x) -> (mean, logvar) per image; decode(z, num_frames) -> frames; construct == decode."""

    def __init__(self, config: AutoencoderKLTemporalDecoderConfig, dtype=ms.float32):
        super().__init__()
        c = self.config = config
        self.compute_dtype = dtype
        self.scaling_factor = c.scaling_factor
        self.force_upcast = c.force_upcast
        self.encoder = Encoder(AutoencoderKLConfig(in_channels=c.in_channels, block_out_channels=c.block_out_channels,
                                                   layers_per_block=c.layers_per_block,
                                                   latent_channels=c.latent_channels), dtype)
        self.decoder = TemporalDecoder(c, dtype)
        self.quant_conv = Conv2d(2 * c.latent_channels, 2 * c.latent_channels, 1, dtype=dtype)

    def encode(self, x: Float[Tensor, "b c h w"]):
        """(mean, logvar) of the latent posterior; logvar clamped to [-30, 20] as diffusers does."""
        return split_moments(self.quant_conv(self.encoder(x.astype(self.compute_dtype))))

    def decode(self, z: Float[Tensor, "bf l h w"], num_frames: int) -> Float[Tensor, "bf c h2 w2"]:
        """Frames from (unscaled) latents of whole videos, num_frames per video."""
        if z.shape[0] % num_frames:
            raise ValueError(f"AutoencoderKLTemporalDecoder.decode: {z.shape[0]} latents are not whole videos of "
                             f"{num_frames} frames")
        indicator = mops.zeros((z.shape[0] // num_frames, num_frames), self.compute_dtype)
        return self.decoder(z.astype(self.compute_dtype), indicator)

    def construct(self, z: Float[Tensor, "bf l h w"], num_frames: int) -> Float[Tensor, "bf c h2 w2"]:
        return self.decode(z, num_frames)
