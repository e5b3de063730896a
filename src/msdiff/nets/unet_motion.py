"""AnimateDiff: MotionAdapter (the motion modules alone) and UNetMotionModel (an SD UNet with them inserted).

`config_from_unet2d(unet_config, adapter_config)` is diffusers' UNetMotionModel.from_unet2d on config dicts; the
assembled net then loads the UNet's and the adapter's safetensors together (`msdiff.io.load_weights(net,
[unet file, adapter file], map_weights)`): their key sets are disjoint and together name every parameter.
Parameter trees have diffusers' names; `map_weights` drops the motion modules' saved sinusoidal tables
(`pos_embed.pe`, recomputed).
"""
from dataclasses import dataclass, fields
from typing import Optional, Tuple, Union

import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn

from .. import ops
from ..blocks.embeddings import TimestepEmbedding, Timesteps, batch_timesteps
from ..blocks.layers import Conv2d, GroupNorm
from ..blocks.motion_blocks import (CrossAttnDownBlockMotion, CrossAttnUpBlockMotion, DownBlockMotion,
                                    UNetMidBlockCrossAttnMotion, UpBlockMotion, motion_modules)
from ..blocks.temporal import repeat_frames, to_frames, to_video
from ..blocks.unet_2d_blocks import UNetMidBlock2DCrossAttn
from . import unet_2d_condition
from ._config import read_config
from .unet_2d_condition import per_block

IntOrTuple = Union[int, Tuple]


@dataclass(frozen=True)
class UNetMotionConfig:
    """The architecture-defining fields of diffusers' UNetMotionModel config (its defaults)."""

    sample_size: Optional[IntOrTuple] = None
    in_channels: int = 4
    out_channels: int = 4
    down_block_types: Tuple[str, ...] = ("CrossAttnDownBlockMotion",) * 3 + ("DownBlockMotion",)
    up_block_types: Tuple[str, ...] = ("UpBlockMotion",) + ("CrossAttnUpBlockMotion",) * 3
    block_out_channels: Tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: IntOrTuple = 2
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    cross_attention_dim: IntOrTuple = 1280
    transformer_layers_per_block: IntOrTuple = 1
    reverse_transformer_layers_per_block: Optional[Tuple] = None
    temporal_transformer_layers_per_block: IntOrTuple = 1
    reverse_temporal_transformer_layers_per_block: Optional[Tuple] = None
    transformer_layers_per_mid_block: Optional[IntOrTuple] = None
    temporal_transformer_layers_per_mid_block: IntOrTuple = 1
    use_linear_projection: bool = False
    num_attention_heads: IntOrTuple = 8
    motion_max_seq_length: int = 32
    motion_num_attention_heads: IntOrTuple = 8
    use_motion_mid_block: bool = True
    mid_block_layers: int = 1
    time_cond_proj_dim: Optional[int] = None


_FIXED = {"act_fn": ("silu", "swish"), "encoder_hid_dim": (None,), "encoder_hid_dim_type": (None,),
          "addition_embed_type": (None,), "addition_time_embed_dim": (None,),
          "projection_class_embeddings_input_dim": (None,), "reverse_motion_num_attention_heads": (None,)}
_DOWN = {"DownBlockMotion": DownBlockMotion, "CrossAttnDownBlockMotion": CrossAttnDownBlockMotion}
_UP = {"UpBlockMotion": UpBlockMotion, "CrossAttnUpBlockMotion": CrossAttnUpBlockMotion}


def config_from_diffusers(d: dict) -> UNetMotionConfig:
    """UNetMotionConfig from a diffusers config.json dict; ValueError names unsupported keys/values."""
    cfg = read_config(UNetMotionConfig, d, "UNetMotionModel", _FIXED)
    for t in cfg.down_block_types + cfg.up_block_types:
        if t not in _DOWN and t not in _UP:
            raise ValueError(f"UNetMotionModel: block type {t!r} is not supported by msdiff")
    if cfg.norm_num_groups is None:
        raise ValueError("UNetMotionModel: norm_num_groups=None is not supported by msdiff")
    return cfg


def _motion_kind(block_type: str, plain: str) -> str:
    return ("CrossAttn" + plain) if "CrossAttn" in block_type else plain


def config_from_unet2d(unet: dict, adapter: dict) -> UNetMotionConfig:
    """diffusers' UNetMotionModel.from_unet2d on config dicts: the UNet's config (read strictly as a
    UNet2DConditionModel first) with Motion block types and the adapter's motion settings."""
    base = unet_2d_condition.config_from_diffusers(unet)
    ad = motion_adapter_config_from_diffusers(adapter)
    n = len(base.down_block_types)
    if len(ad.block_out_channels) != n:
        raise ValueError("UNetMotionModel.from_unet2d: the motion adapter has a different number of blocks")
    if per_block(base.layers_per_block, n) != per_block(ad.motion_layers_per_block, n):
        raise ValueError("UNetMotionModel.from_unet2d: the motion adapter has a different number of layers per block")
    if ad.conv_in_channels:
        raise ValueError("UNetMotionModel.from_unet2d: motion adapters with conv_in_channels (SparseCtrl-style "
                         "conv_in) are not supported by msdiff")
    if base.addition_embed_type is not None or base.time_embedding_dim is not None:
        raise ValueError("UNetMotionModel.from_unet2d: UNets with addition_embed_type / time_embedding_dim are not "
                         "supported by msdiff")
    d = {f.name: getattr(base, f.name) for f in fields(base)}
    d.update(down_block_types=tuple(_motion_kind(t, "DownBlockMotion") for t in base.down_block_types),
             up_block_types=tuple(_motion_kind(t, "UpBlockMotion") for t in base.up_block_types),
             num_attention_heads=base.attention_head_dim, layers_per_block=ad.motion_layers_per_block,
             motion_num_attention_heads=ad.motion_num_attention_heads, motion_max_seq_length=ad.motion_max_seq_length,
             use_motion_mid_block=ad.use_motion_mid_block,
             temporal_transformer_layers_per_mid_block=ad.motion_transformer_layers_per_mid_block,
             temporal_transformer_layers_per_block=ad.motion_transformer_layers_per_block)
    names = {f.name for f in fields(UNetMotionConfig)}
    return UNetMotionConfig(**{k: v for k, v in d.items() if k in names})


def map_weights(key: str) -> Optional[str]:
    """diffusers state-dict key -> msdiff parameter name; the motion modules' `pos_embed.pe` tables are dropped."""
    return None if key.endswith(".pos_embed.pe") else key


class UNetMotionModel(nn.Cell):
    """AnimateDiff's denoiser: unet(sample [b, c, f, h, w], timestep, encoder_hidden_states [b * f or b, n, d],
    timestep_cond=None) -> eps [b, out, f, h, w]. diffusers takes the context already repeated per frame
    ([b * f, n, d], as its pipelines pass it); a [b, n, d] context is repeated here."""

    def __init__(self, config: UNetMotionConfig, dtype=ms.float32):
        super().__init__()
        c = self.config = config
        self.compute_dtype = dtype
        n = len(c.down_block_types)
        boc = c.block_out_channels
        heads, cross = per_block(c.num_attention_heads, n), per_block(c.cross_attention_dim, n)
        layers, depth = per_block(c.layers_per_block, n), per_block(c.transformer_layers_per_block, n)
        t_depth = per_block(c.temporal_transformer_layers_per_block, n)
        m_heads = per_block(c.motion_num_attention_heads, n)
        groups, eps, seq = c.norm_num_groups, c.norm_eps, c.motion_max_seq_length
        temb = boc[0] * 4
        self.conv_in = Conv2d(c.in_channels, boc[0], 3, padding=1, dtype=dtype)
        self.time_proj = Timesteps(boc[0], True, 0)
        self.time_embedding = TimestepEmbedding(boc[0], temb, cond_proj_dim=c.time_cond_proj_dim, dtype=dtype)

        down = []
        out_ch = boc[0]
        for i, kind in enumerate(c.down_block_types):
            in_ch, out_ch = out_ch, boc[i]
            common = dict(num_layers=layers[i], resnet_eps=eps, resnet_groups=groups, add_downsample=i < n - 1,
                          downsample_padding=c.downsample_padding, temporal_num_attention_heads=m_heads[i],
                          temporal_max_seq_length=seq, temporal_transformer_layers_per_block=t_depth[i], dtype=dtype)
            if kind == "CrossAttnDownBlockMotion":
                common.update(transformer_layers_per_block=depth[i], num_attention_heads=heads[i],
                              cross_attention_dim=cross[i], use_linear_projection=c.use_linear_projection)
            down.append(_DOWN[kind](in_ch, out_ch, temb, **common))
        self.down_blocks = nn.CellList(down)

        mid_depth = c.transformer_layers_per_mid_block
        if mid_depth is None:
            mid_depth = depth[-1] if isinstance(depth[-1], int) else 1
        mid = dict(num_layers=c.mid_block_layers, transformer_layers_per_block=mid_depth,
                   num_attention_heads=heads[-1], cross_attention_dim=cross[-1], resnet_eps=eps, resnet_groups=groups,
                   output_scale_factor=c.mid_block_scale_factor, use_linear_projection=c.use_linear_projection,
                   dtype=dtype)
        if c.use_motion_mid_block:
            self.mid_block = UNetMidBlockCrossAttnMotion(
                boc[-1], temb, temporal_num_attention_heads=m_heads[-1], temporal_max_seq_length=seq,
                temporal_transformer_layers_per_block=c.temporal_transformer_layers_per_mid_block, **mid)
        else:
            self.mid_block = UNetMidBlock2DCrossAttn(boc[-1], temb, **mid)

        rev = tuple(reversed(boc))
        rev_depth = c.reverse_transformer_layers_per_block or tuple(reversed(depth))
        rev_t_depth = c.reverse_temporal_transformer_layers_per_block or tuple(reversed(t_depth))
        up = []
        out_ch = rev[0]
        for i, kind in enumerate(c.up_block_types):
            j = n - 1 - i
            prev_ch, out_ch, in_ch = out_ch, rev[i], rev[min(i + 1, n - 1)]
            common = dict(num_layers=layers[j] + 1, resnet_eps=eps, resnet_groups=groups, add_upsample=i < n - 1,
                          temporal_num_attention_heads=m_heads[j], temporal_max_seq_length=seq,
                          temporal_transformer_layers_per_block=rev_t_depth[i], dtype=dtype)
            if kind == "CrossAttnUpBlockMotion":
                common.update(transformer_layers_per_block=rev_depth[i], num_attention_heads=heads[j],
                              cross_attention_dim=cross[j], use_linear_projection=c.use_linear_projection)
            up.append(_UP[kind](in_ch, prev_ch, out_ch, temb, **common))
        self.up_blocks = nn.CellList(up)
        self.num_upsamplers = n - 1
        self.conv_norm_out = GroupNorm(groups, boc[0], eps=eps, dtype=dtype)
        self.conv_out = Conv2d(boc[0], c.out_channels, 3, padding=1, dtype=dtype)

    def construct(self, sample: Float[Tensor, "b c f h w"], timestep, encoder_hidden_states: Float[Tensor, "n m d"],
                  timestep_cond: Float[Tensor, "b p"] = None) -> Float[Tensor, "b o f h w"]:
        sample = sample.astype(self.compute_dtype)
        b, _, f, h, w = sample.shape
        factor = 2 ** self.num_upsamplers
        forward_upsample_size = h % factor != 0 or w % factor != 0
        t = batch_timesteps(timestep, b)
        cond = None if timestep_cond is None else timestep_cond.astype(self.compute_dtype)
        emb = repeat_frames(self.time_embedding(self.time_proj(t).astype(self.compute_dtype), cond), f)
        context = encoder_hidden_states.astype(self.compute_dtype)
        if context.shape[0] != b * f:
            if context.shape[0] != b:
                raise ValueError(f"UNetMotionModel: encoder_hidden_states batch {context.shape[0]} is neither "
                                 f"b * f = {b * f} nor b = {b}")
            context = repeat_frames(context, f)

        x = self.conv_in(to_frames(sample))
        skips = (x,)
        for i in range(len(self.down_blocks)):
            x, res = self.down_blocks[i](x, emb, context, f)
            skips = skips + res
        if self.config.use_motion_mid_block:
            x = self.mid_block(x, emb, context, f)
        else:
            x = self.mid_block(x, emb, context)
        for i in range(len(self.up_blocks)):
            block = self.up_blocks[i]
            k = len(block.resnets)
            res, skips = skips[len(skips) - k:], skips[:len(skips) - k]
            size = None
            if forward_upsample_size and i < len(self.up_blocks) - 1:
                size = skips[-1].shape[2:]
            x = block(x, res, emb, context, f, size)
        x = self.conv_out(ops.silu(self.conv_norm_out(x)))
        return to_video(x, f)


@dataclass(frozen=True)
class MotionAdapterConfig:
    """diffusers' MotionAdapter config fields (its defaults)."""

    block_out_channels: Tuple[int, ...] = (320, 640, 1280, 1280)
    motion_layers_per_block: IntOrTuple = 2
    motion_transformer_layers_per_block: IntOrTuple = 1
    motion_mid_block_layers_per_block: int = 1
    motion_transformer_layers_per_mid_block: IntOrTuple = 1
    motion_num_attention_heads: IntOrTuple = 8
    motion_norm_num_groups: int = 32
    motion_max_seq_length: int = 32
    use_motion_mid_block: bool = True
    conv_in_channels: Optional[int] = None


def motion_adapter_config_from_diffusers(d: dict) -> MotionAdapterConfig:
    """MotionAdapterConfig from a diffusers config.json dict; ValueError names unknown keys."""
    return read_config(MotionAdapterConfig, d, "MotionAdapter")


class _MotionModules(nn.Cell):
    """diffusers' MotionModules container: `motion_modules.<i>`."""

    def __init__(self, channels: int, layers: int, heads: int, depth, groups: int, max_seq_length: int, dtype):
        super().__init__()
        self.motion_modules = motion_modules(layers, channels, heads, depth, groups, max_seq_length, dtype)


class MotionAdapter(nn.Cell):
    """The motion modules of an AnimateDiff checkpoint, in diffusers' tree (down_blocks / mid_block / up_blocks);
    it holds weights only: run them inside a UNetMotionModel."""

    config_from_diffusers = staticmethod(motion_adapter_config_from_diffusers)

    def __init__(self, config: MotionAdapterConfig, dtype=ms.float32):
        super().__init__()
        c = self.config = config
        n = len(c.block_out_channels)
        layers, depth = per_block(c.motion_layers_per_block, n), per_block(c.motion_transformer_layers_per_block, n)
        heads = per_block(c.motion_num_attention_heads, n)
        groups, seq = c.motion_norm_num_groups, c.motion_max_seq_length
        self.conv_in = None
        if c.conv_in_channels:
            self.conv_in = Conv2d(c.conv_in_channels, c.block_out_channels[0], 3, padding=1, dtype=dtype)
        self.down_blocks = nn.CellList([_MotionModules(c.block_out_channels[i], layers[i], heads[i], depth[i], groups,
                                                       seq, dtype) for i in range(n)])
        self.mid_block = None
        if c.use_motion_mid_block:
            self.mid_block = _MotionModules(c.block_out_channels[-1], c.motion_mid_block_layers_per_block, heads[-1],
                                            c.motion_transformer_layers_per_mid_block, groups, seq, dtype)
        self.up_blocks = nn.CellList([_MotionModules(c.block_out_channels[n - 1 - i], layers[n - 1 - i] + 1,
                                                     heads[n - 1 - i], depth[n - 1 - i], groups, seq, dtype)
                                      for i in range(n)])
