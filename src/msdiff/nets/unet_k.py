"""The K-diffusion UNet2DConditionModel of stabilityai/sd-x2-latent-upscaler (down / up blocks KDownBlock2D,
KCrossAttnDownBlock2D, KCrossAttnUpBlock2D, KUpBlock2D; no mid block; Gaussian Fourier time embedding with GELU
and a post-GELU, conditioned on `timestep_cond` through cond_proj; 1x1 conv in / out, no output norm).

diffusers keeps one class name for it, so the registry's "UNet2DConditionModel" points here: `config_from_diffusers`
reads a config with K block types as `KUNet2DConditionConfig` and any other as unet_2d_condition's config, and
`UNet2DConditionModel(config)` builds the matching net. The parameter tree has diffusers' names (`map_weights` is the
identity).
"""
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .. import ops
from ..blocks.embeddings import TimestepEmbedding, batch_timesteps
from ..blocks.k_blocks import KCrossAttnDownBlock2D, KCrossAttnUpBlock2D, KDownBlock2D, KUpBlock2D
from ..blocks.layers import Conv2d, _param
from . import unet_2d_condition as u2d
from ._config import read_config

_DOWN = {"KDownBlock2D": KDownBlock2D, "KCrossAttnDownBlock2D": KCrossAttnDownBlock2D}
_UP = {"KUpBlock2D": KUpBlock2D, "KCrossAttnUpBlock2D": KCrossAttnUpBlock2D}


@dataclass(frozen=True)
class KUNet2DConditionConfig:
    """The architecture-defining fields of a K-block UNet2DConditionModel config (sd-x2-latent-upscaler's values)."""

    sample_size: Optional[int] = None
    in_channels: int = 8
    out_channels: int = 5
    flip_sin_to_cos: bool = True
    down_block_types: Tuple[str, ...] = ("KDownBlock2D", "KCrossAttnDownBlock2D", "KCrossAttnDownBlock2D",
                                         "KCrossAttnDownBlock2D")
    up_block_types: Tuple[str, ...] = ("KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D",
                                       "KUpBlock2D")
    block_out_channels: Tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: Union[int, Tuple[int, ...]] = 2
    norm_eps: float = 1e-5
    cross_attention_dim: int = 768
    attention_head_dim: Union[int, Tuple[int, ...]] = 64
    time_embedding_dim: Optional[int] = None
    time_cond_proj_dim: Optional[int] = 896
    conv_in_kernel: int = 1
    conv_out_kernel: int = 1
    act_fn: str = "gelu"
    timestep_post_act: Optional[str] = "gelu"
    time_embedding_type: str = "fourier"
    # read by the SD recipes' shared helpers; fixed for this net
    addition_embed_type: Optional[str] = None
    attention_type: str = "default"


# keys with the only values the K UNet takes (others change the architecture and are refused)
_FIXED = {"mid_block_type": (None,), "norm_num_groups": (None,), "center_input_sample": (False,),
          "class_embed_type": (None,), "num_class_embeds": (None,), "class_embeddings_concat": (False,),
          "encoder_hid_dim": (None,), "encoder_hid_dim_type": (None,), "addition_time_embed_dim": (None,),
          "projection_class_embeddings_input_dim": (None,), "time_embedding_act_fn": (None,),
          "only_cross_attention": (False,), "dual_cross_attention": (False,), "num_attention_heads": (None,),
          "cross_attention_norm": (None,), "transformer_layers_per_block": (1,),
          "reverse_transformer_layers_per_block": (None,), "mid_block_only_cross_attention": (None,),
          "resnet_skip_time_act": (False,), "resnet_out_scale_factor": (1.0,), "use_linear_projection": (False,)}
# keys the K blocks do not read (diffusers' get_*_block ignore them for K blocks), or inference no-ops
_IGNORED = {"dropout", "freq_shift", "downsample_padding", "mid_block_scale_factor", "resnet_time_scale_shift",
            "upcast_attention", "addition_embed_type_num_heads"}


def _is_k(d: dict) -> bool:
    types = tuple(d.get("down_block_types", ())) + tuple(d.get("up_block_types", ()))
    return any(str(t).startswith("K") for t in types)


def config_from_diffusers(d: dict) -> Union[KUNet2DConditionConfig, u2d.UNet2DConditionConfig]:
    """KUNet2DConditionConfig for K block types, else unet_2d_condition's UNet2DConditionConfig; ValueError names an
    unsupported key / value or a mix of K and other blocks."""
    if not _is_k(d):
        return u2d.config_from_diffusers(d)
    name = "UNet2DConditionModel (K blocks)"
    cfg = read_config(KUNet2DConditionConfig, d, name, _FIXED, _IGNORED)
    for t in cfg.down_block_types:
        if t not in _DOWN:
            raise ValueError(f"{name}: down block type {t!r} cannot be mixed with K blocks")
    for t in cfg.up_block_types:
        if t not in _UP:
            raise ValueError(f"{name}: up block type {t!r} cannot be mixed with K blocks")
    if cfg.time_embedding_type != "fourier" or cfg.act_fn != "gelu" or cfg.timestep_post_act not in (None, "gelu"):
        raise ValueError(f"{name}: msdiff supports time_embedding_type 'fourier', act_fn 'gelu' and timestep_post_act "
                         f"'gelu' / None, got {cfg.time_embedding_type!r}, {cfg.act_fn!r}, {cfg.timestep_post_act!r}")
    if any(ch % 32 for ch in cfg.block_out_channels):
        raise ValueError(f"{name}: block_out_channels must be multiples of 32 (the K blocks' group size), got "
                         f"{cfg.block_out_channels}")
    return cfg


def map_weights(key: str) -> str:
    """diffusers state-dict key -> msdiff parameter name (identity)."""
    return key


class GaussianFourierProjection(nn.Cell):
    """[cos, sin](2 pi t w) (flip_sin_to_cos) of fixed random frequencies `weight`, in fp32."""

    def __init__(self, embedding_size: int, flip_sin_to_cos: bool = True):
        super().__init__()
        self.flip_sin_to_cos = flip_sin_to_cos
        self.weight = _param("normal", (embedding_size,), ms.float32, "weight")

    def construct(self, t: Float[Tensor, "b"]) -> Float[Tensor, "b e"]:
        x = t.reshape(-1, 1) * self.weight.astype(ms.float32).reshape(1, -1) * 2 * np.pi
        parts = (mops.cos(x), mops.sin(x)) if self.flip_sin_to_cos else (mops.sin(x), mops.cos(x))
        return mops.cat(parts, axis=-1)


class KUNet2DConditionModel(nn.Cell):
    """unet(sample, timestep, encoder_hidden_states, timestep_cond) -> out (out_channels), diffusers' forward for a
    K-block UNet2DConditionModel."""

    diffusers_class = "UNet2DConditionModel"  # the class name diffusers saves for this net

    def __init__(self, config: KUNet2DConditionConfig, dtype=ms.float32):
        super().__init__()
        c = self.config = config
        self.compute_dtype = dtype
        boc, n = c.block_out_channels, len(c.down_block_types)
        heads = u2d.per_block(c.attention_head_dim, n)
        layers = u2d.per_block(c.layers_per_block, n)
        temb = c.time_embedding_dim or boc[0] * 2
        self.conv_in = Conv2d(c.in_channels, boc[0], c.conv_in_kernel, padding=(c.conv_in_kernel - 1) // 2,
                              dtype=dtype)
        self.time_proj = GaussianFourierProjection(temb // 2, c.flip_sin_to_cos)
        self.time_embedding = TimestepEmbedding(temb, temb, cond_proj_dim=c.time_cond_proj_dim, dtype=dtype,
                                                act_fn="gelu")
        down, out_ch = [], boc[0]
        for i, kind in enumerate(c.down_block_types):
            in_ch, out_ch = out_ch, boc[i]
            common = dict(num_layers=layers[i], resnet_eps=c.norm_eps, add_downsample=i < n - 1, dtype=dtype)
            if kind == "KCrossAttnDownBlock2D":
                common.update(cross_attention_dim=c.cross_attention_dim, attention_head_dim=heads[i])
            down.append(_DOWN[kind](in_ch, out_ch, temb, **common))
        self.down_blocks = nn.CellList(down)
        rev, rev_heads, rev_layers = tuple(reversed(boc)), tuple(reversed(heads)), tuple(reversed(layers))
        up = []
        for i, kind in enumerate(c.up_block_types):
            common = dict(num_layers=rev_layers[i] + 1, resnet_eps=c.norm_eps, add_upsample=i < n - 1, dtype=dtype)
            if kind == "KCrossAttnUpBlock2D":
                common.update(cross_attention_dim=c.cross_attention_dim, attention_head_dim=rev_heads[i])
            up.append(_UP[kind](rev[min(i + 1, n - 1)], rev[i], temb, **common))
        self.up_blocks = nn.CellList(up)
        self.conv_out = Conv2d(boc[0], c.out_channels, c.conv_out_kernel, padding=(c.conv_out_kernel - 1) // 2,
                               dtype=dtype)

    def construct(self, sample: Float[Tensor, "b c h w"], timestep, encoder_hidden_states: Float[Tensor, "b n d"],
                  timestep_cond: Float[Tensor, "b p"] = None) -> Float[Tensor, "b o h w"]:
        dt = self.compute_dtype
        sample, context = sample.astype(dt), encoder_hidden_states.astype(dt)
        if self.config.time_cond_proj_dim is not None and timestep_cond is None:
            raise ValueError("UNet2DConditionModel (K blocks): time_cond_proj_dim is set: pass timestep_cond")
        cond = None if timestep_cond is None else timestep_cond.astype(dt)
        emb = self.time_embedding(self.time_proj(batch_timesteps(timestep, sample.shape[0])).astype(dt), cond)
        if self.config.timestep_post_act is not None:
            emb = ops.gelu(emb)
        x = self.conv_in(sample)
        skips = (x,)
        for block in self.down_blocks:
            x, res = block(x, emb, context)
            skips = skips + res
        for block in self.up_blocks:
            k = len(block.resnets)
            res, skips = skips[len(skips) - k:], skips[:len(skips) - k]
            x = block(x, res, emb, context)
        return self.conv_out(x)


def UNet2DConditionModel(config, dtype=ms.float32) -> nn.Cell:  # noqa: N802 (the registry builds nets by class name)
    """The K-block UNet for a KUNet2DConditionConfig, unet_2d_condition's UNet2DConditionModel otherwise."""
    if isinstance(config, KUNet2DConditionConfig):
        return KUNet2DConditionModel(config, dtype=dtype)
    return u2d.UNet2DConditionModel(config, dtype=dtype)
