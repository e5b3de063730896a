"""UNet3DConditionModel: ModelScope / damo-vilab text-to-video (a SD-style UNet with temporal convs and transformers).

The parameter tree has diffusers' names, so `map_weights` is the identity. Input and output are video latents
[b, c, f, h, w]; inside, features are frame batches [b * f, c, h, w].
"""
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn

from .. import ops
from ..blocks.embeddings import TimestepEmbedding, Timesteps, batch_timesteps
from ..blocks.layers import Conv2d, GroupNorm
from ..blocks.temporal import TransformerTemporalModel, repeat_frames, to_frames, to_video
from ..blocks.unet_3d_blocks import (CrossAttnDownBlock3D, CrossAttnUpBlock3D, DownBlock3D, UNetMidBlock3DCrossAttn,
                                     UpBlock3D)
from ._config import read_config
from .unet_2d_condition import per_block


@dataclass(frozen=True)
class UNet3DConditionConfig:
    """The architecture-defining fields of diffusers' UNet3DConditionModel config (diffusers' defaults)."""

    sample_size: Optional[Union[int, Tuple]] = None
    in_channels: int = 4
    out_channels: int = 4
    down_block_types: Tuple[str, ...] = ("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D",
                                         "DownBlock3D")
    up_block_types: Tuple[str, ...] = ("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D")
    block_out_channels: Tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    cross_attention_dim: int = 1024
    attention_head_dim: Union[int, Tuple[int, ...]] = 64
    time_cond_proj_dim: Optional[int] = None


_FIXED = {"act_fn": ("silu", "swish"), "num_attention_heads": (None,)}
_DOWN = {"DownBlock3D": DownBlock3D, "CrossAttnDownBlock3D": CrossAttnDownBlock3D}
_UP = {"UpBlock3D": UpBlock3D, "CrossAttnUpBlock3D": CrossAttnUpBlock3D}


def config_from_diffusers(d: dict) -> UNet3DConditionConfig:
    """UNet3DConditionConfig from a diffusers config.json dict; ValueError names unsupported keys/values."""
    cfg = read_config(UNet3DConditionConfig, d, "UNet3DConditionModel", _FIXED)
    for t in cfg.down_block_types + cfg.up_block_types:
        if t not in _DOWN and t not in _UP:
            raise ValueError(f"UNet3DConditionModel: block type {t!r} is not supported by msdiff")
    if cfg.norm_num_groups is None:
        raise ValueError("UNet3DConditionModel: norm_num_groups=None is not supported by msdiff")
    if not isinstance(cfg.attention_head_dim, int):
        raise ValueError("UNet3DConditionModel: a per-block attention_head_dim tuple is not supported "
                         "(diffusers' transformer_in needs an int)")
    return cfg


def map_weights(key: str) -> str:
    """diffusers state-dict key -> msdiff parameter name (identity: the trees match)."""
    return key


class UNet3DConditionModel(nn.Cell):
    """Noise-prediction video UNet: unet(sample [b, c, f, h, w], timestep, encoder_hidden_states [b, n, d],
    timestep_cond=None) -> eps [b, out, f, h, w]."""

    def __init__(self, config: UNet3DConditionConfig, dtype=ms.float32):
        super().__init__()
        c = self.config = config
        self.compute_dtype = dtype
        n = len(c.down_block_types)
        boc = c.block_out_channels
        # as in diffusers, `attention_head_dim` is the head width of transformer_in and, through
        # get_down_block's `num_attention_heads`, of every block's transformers.
        head_dim = per_block(c.attention_head_dim, n)
        groups, eps = c.norm_num_groups, c.norm_eps
        temb = boc[0] * 4
        self.conv_in = Conv2d(c.in_channels, boc[0], 3, padding=1, dtype=dtype)
        self.time_proj = Timesteps(boc[0], True, 0)
        self.time_embedding = TimestepEmbedding(boc[0], temb, cond_proj_dim=c.time_cond_proj_dim, dtype=dtype)
        self.transformer_in = TransformerTemporalModel(8, c.attention_head_dim, boc[0], 1, groups, dtype=dtype)

        down = []
        out_ch = boc[0]
        for i, kind in enumerate(c.down_block_types):
            in_ch, out_ch = out_ch, boc[i]
            common = dict(num_layers=c.layers_per_block, resnet_eps=eps, resnet_groups=groups,
                          add_downsample=i < n - 1, downsample_padding=c.downsample_padding, dtype=dtype)
            if kind == "CrossAttnDownBlock3D":
                common.update(num_attention_heads=head_dim[i], cross_attention_dim=c.cross_attention_dim)
            down.append(_DOWN[kind](in_ch, out_ch, temb, **common))
        self.down_blocks = nn.CellList(down)
        self.mid_block = UNetMidBlock3DCrossAttn(boc[-1], temb, num_attention_heads=head_dim[-1],
                                                 cross_attention_dim=c.cross_attention_dim, resnet_eps=eps,
                                                 resnet_groups=groups, output_scale_factor=c.mid_block_scale_factor,
                                                 dtype=dtype)
        rev = tuple(reversed(boc))
        up = []
        out_ch = rev[0]
        for i, kind in enumerate(c.up_block_types):
            prev_ch, out_ch, in_ch = out_ch, rev[i], rev[min(i + 1, n - 1)]
            common = dict(num_layers=c.layers_per_block + 1, resnet_eps=eps, resnet_groups=groups,
                          add_upsample=i < n - 1, dtype=dtype)
            if kind == "CrossAttnUpBlock3D":
                common.update(num_attention_heads=head_dim[n - 1 - i], cross_attention_dim=c.cross_attention_dim)
            up.append(_UP[kind](in_ch, prev_ch, out_ch, temb, **common))
        self.up_blocks = nn.CellList(up)
        self.num_upsamplers = n - 1
        self.conv_norm_out = GroupNorm(groups, boc[0], eps=eps, dtype=dtype)
        self.conv_out = Conv2d(boc[0], c.out_channels, 3, padding=1, dtype=dtype)

    def construct(self, sample: Float[Tensor, "b c f h w"], timestep, encoder_hidden_states: Float[Tensor, "b n d"],
                  timestep_cond: Float[Tensor, "b p"] = None) -> Float[Tensor, "b o f h w"]:
        sample = sample.astype(self.compute_dtype)
        b, _, f, h, w = sample.shape
        factor = 2 ** self.num_upsamplers
        forward_upsample_size = h % factor != 0 or w % factor != 0
        t = batch_timesteps(timestep, b)
        cond = None if timestep_cond is None else timestep_cond.astype(self.compute_dtype)
        emb = repeat_frames(self.time_embedding(self.time_proj(t).astype(self.compute_dtype), cond), f)
        context = repeat_frames(encoder_hidden_states.astype(self.compute_dtype), f)

        x = self.transformer_in(self.conv_in(to_frames(sample)), f)
        return to_video(self.unet_body(x, emb, context, f, forward_upsample_size), f)

    def unet_body(self, x: Tensor, emb: Tensor, context: Tensor, f: int, forward_upsample_size: bool) -> Tensor:
        """Down, mid and up blocks and the output head on frame batches (shared with I2VGenXLUNet)."""
        skips = (x,)
        for i in range(len(self.down_blocks)):
            x, res = self.down_blocks[i](x, emb, context, f)
            skips = skips + res
        x = self.mid_block(x, emb, context, f)
        for i in range(len(self.up_blocks)):
            block = self.up_blocks[i]
            k = len(block.resnets)
            res, skips = skips[len(skips) - k:], skips[:len(skips) - k]
            size = None
            if forward_upsample_size and i < len(self.up_blocks) - 1:
                size = skips[-1].shape[2:]
            x = block(x, res, emb, context, f, size)
        return self.conv_out(ops.silu(self.conv_norm_out(x)))
