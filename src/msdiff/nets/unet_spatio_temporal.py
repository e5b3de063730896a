"""UNetSpatioTemporalConditionModel: Stable Video Diffusion's denoiser (image-to-video).

The parameter tree has diffusers' names, so `map_weights` is the identity. Input and output are latents
[b, f, c, h, w] (frames before channels, as diffusers); the added time ids (fps, motion bucket, noise
augmentation) enter through `add_time_proj` / `add_embedding`.
"""
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .. import ops
from ..blocks.embeddings import TimestepEmbedding, Timesteps, batch_timesteps
from ..blocks.layers import Conv2d, GroupNorm
from ..blocks.temporal import repeat_frames
from ..blocks.unet_spatio_temporal_blocks import (CrossAttnDownBlockSpatioTemporal, CrossAttnUpBlockSpatioTemporal,
                                                  DownBlockSpatioTemporal, UNetMidBlockSpatioTemporal,
                                                  UpBlockSpatioTemporal)
from ._config import read_config
from .unet_2d_condition import per_block

IntOrTuple = Union[int, Tuple]


@dataclass(frozen=True)
class UNetSpatioTemporalConfig:
    """The architecture-defining fields of diffusers' UNetSpatioTemporalConditionModel config (its defaults)."""

    sample_size: Optional[IntOrTuple] = None
    in_channels: int = 8
    out_channels: int = 4
    down_block_types: Tuple[str, ...] = ("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",)
    up_block_types: Tuple[str, ...] = ("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3
    block_out_channels: Tuple[int, ...] = (320, 640, 1280, 1280)
    addition_time_embed_dim: int = 256
    projection_class_embeddings_input_dim: int = 768
    layers_per_block: IntOrTuple = 2
    cross_attention_dim: IntOrTuple = 1024
    transformer_layers_per_block: IntOrTuple = 1
    num_attention_heads: IntOrTuple = (5, 10, 20, 20)
    num_frames: int = 25


_DOWN = {"DownBlockSpatioTemporal": DownBlockSpatioTemporal,
         "CrossAttnDownBlockSpatioTemporal": CrossAttnDownBlockSpatioTemporal}
_UP = {"UpBlockSpatioTemporal": UpBlockSpatioTemporal, "CrossAttnUpBlockSpatioTemporal": CrossAttnUpBlockSpatioTemporal}


def config_from_diffusers(d: dict) -> UNetSpatioTemporalConfig:
    """UNetSpatioTemporalConfig from a diffusers config.json dict; ValueError names unsupported keys/values."""
    cfg = read_config(UNetSpatioTemporalConfig, d, "UNetSpatioTemporalConditionModel")
    for t in cfg.down_block_types + cfg.up_block_types:
        if t not in _DOWN and t not in _UP:
            raise ValueError(f"UNetSpatioTemporalConditionModel: block type {t!r} is not supported by msdiff")
    if any(isinstance(v, tuple) for v in per_block(cfg.transformer_layers_per_block, len(cfg.down_block_types))):
        raise ValueError("UNetSpatioTemporalConditionModel: nested transformer_layers_per_block is not supported")
    return cfg


def map_weights(key: str) -> str:
    """diffusers state-dict key -> msdiff parameter name (identity: the trees match)."""
    return key


class UNetSpatioTemporalConditionModel(nn.Cell):
    """unet(sample [b, f, c, h, w], timestep, encoder_hidden_states [b, n, d], added_time_ids [b, k])
    -> [b, f, out, h, w]; every frame is a video frame (image_only_indicator zeros, as diffusers)."""

    def __init__(self, config: UNetSpatioTemporalConfig, dtype=ms.float32):
        super().__init__()
        c = self.config = config
        self.compute_dtype = dtype
        n = len(c.down_block_types)
        boc = c.block_out_channels
        heads, cross = per_block(c.num_attention_heads, n), per_block(c.cross_attention_dim, n)
        layers, depth = per_block(c.layers_per_block, n), per_block(c.transformer_layers_per_block, n)
        temb = boc[0] * 4
        self.conv_in = Conv2d(c.in_channels, boc[0], 3, padding=1, dtype=dtype)
        self.time_proj = Timesteps(boc[0], True, 0)
        self.time_embedding = TimestepEmbedding(boc[0], temb, dtype=dtype)
        self.add_time_proj = Timesteps(c.addition_time_embed_dim, True, 0)
        self.add_embedding = TimestepEmbedding(c.projection_class_embeddings_input_dim, temb, dtype=dtype)

        down = []
        out_ch = boc[0]
        for i, kind in enumerate(c.down_block_types):
            in_ch, out_ch = out_ch, boc[i]
            common = dict(num_layers=layers[i], add_downsample=i < n - 1, dtype=dtype)
            if kind == "CrossAttnDownBlockSpatioTemporal":
                common.update(transformer_layers_per_block=depth[i], num_attention_heads=heads[i],
                              cross_attention_dim=cross[i])
            down.append(_DOWN[kind](in_ch, out_ch, temb, **common))
        self.down_blocks = nn.CellList(down)
        self.mid_block = UNetMidBlockSpatioTemporal(boc[-1], temb, transformer_layers_per_block=depth[-1],
                                                    num_attention_heads=heads[-1], cross_attention_dim=cross[-1],
                                                    dtype=dtype)
        rev = tuple(reversed(boc))
        up = []
        out_ch = rev[0]
        for i, kind in enumerate(c.up_block_types):
            j = n - 1 - i
            prev_ch, out_ch, in_ch = out_ch, rev[i], rev[min(i + 1, n - 1)]
            # resnet eps stays 1e-6: diffusers' get_up_block drops the UNet's resnet_eps=1e-5 for these blocks
            common = dict(num_layers=layers[j] + 1, add_upsample=i < n - 1, dtype=dtype)
            if kind == "CrossAttnUpBlockSpatioTemporal":
                common.update(transformer_layers_per_block=depth[j], num_attention_heads=heads[j],
                              cross_attention_dim=cross[j])
            up.append(_UP[kind](in_ch, prev_ch, out_ch, temb, **common))
        self.up_blocks = nn.CellList(up)
        self.num_upsamplers = n - 1
        self.conv_norm_out = GroupNorm(32, boc[0], eps=1e-5, dtype=dtype)
        self.conv_out = Conv2d(boc[0], c.out_channels, 3, padding=1, dtype=dtype)

    def construct(self, sample: Float[Tensor, "b f c h w"], timestep, encoder_hidden_states: Float[Tensor, "b n d"],
                  added_time_ids: Float[Tensor, "b k"]) -> Float[Tensor, "b f o h w"]:
        sample = sample.astype(self.compute_dtype)
        b, f, _, h, w = sample.shape
        factor = 2 ** self.num_upsamplers
        forward_upsample_size = h % factor != 0 or w % factor != 0
        t = batch_timesteps(timestep, b)
        emb = self.time_embedding(self.time_proj(t).astype(self.compute_dtype))
        time_embeds = self.add_time_proj(added_time_ids.astype(ms.float32).reshape(-1)).reshape(b, -1)
        emb = repeat_frames(emb + self.add_embedding(time_embeds.astype(self.compute_dtype)), f)
        context = repeat_frames(encoder_hidden_states.astype(self.compute_dtype), f)
        indicator = mops.zeros((b, f), self.compute_dtype)

        x = self.conv_in(sample.reshape((b * f,) + sample.shape[2:]))
        skips = (x,)
        for i in range(len(self.down_blocks)):
            x, res = self.down_blocks[i](x, emb, context, indicator)
            skips = skips + res
        x = self.mid_block(x, emb, context, indicator)
        for i in range(len(self.up_blocks)):
            block = self.up_blocks[i]
            k = len(block.resnets)
            res, skips = skips[len(skips) - k:], skips[:len(skips) - k]
            size = None
            if forward_upsample_size and i < len(self.up_blocks) - 1:
                size = skips[-1].shape[2:]
            x = block(x, res, emb, context, indicator, size)
        x = self.conv_out(ops.silu(self.conv_norm_out(x)))
        return x.reshape((b, f) + x.shape[1:])
