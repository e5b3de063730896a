"""ControlNetModel (Zhang et al. 2023, "Adding Conditional Control to Text-to-Image Diffusion Models"):
a trainable copy of the SD / SD-XL UNet encoder fed with an embedded control image, whose skips and mid-block
output pass through zero-initialised 1x1 convs and are added to the frozen UNet's (diffusers' ControlNetModel).

The encoder half (conv_in, time and SD-XL text_time embeddings, down and mid blocks) is built by the same
functions as UNet2DConditionModel's, so the parameter tree has diffusers' names and `map_weights` is the identity.
"""
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .. import ops
from ..blocks.layers import Conv2d
from ._config import read_config
from .unet_2d_condition import _DOWN, TimeConditioned, make_down_blocks, make_mid_block, per_block

IntOrTuple = Union[int, Tuple]


@dataclass(frozen=True)
class ControlNetConfig:
    """The architecture-defining fields of diffusers' ControlNetModel config (diffusers' defaults)."""

    in_channels: int = 4
    conditioning_channels: int = 3
    flip_sin_to_cos: bool = True
    freq_shift: float = 0
    down_block_types: Tuple[str, ...] = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                         "DownBlock2D")
    mid_block_type: str = "UNetMidBlock2DCrossAttn"
    only_cross_attention: Union[bool, Tuple[bool, ...]] = False
    block_out_channels: Tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    cross_attention_dim: int = 1280
    transformer_layers_per_block: IntOrTuple = 1
    attention_head_dim: IntOrTuple = 8
    num_attention_heads: Optional[IntOrTuple] = None
    use_linear_projection: bool = False
    upcast_attention: bool = False
    resnet_time_scale_shift: str = "default"
    addition_embed_type: Optional[str] = None
    addition_time_embed_dim: Optional[int] = None
    projection_class_embeddings_input_dim: Optional[int] = None
    controlnet_conditioning_channel_order: str = "rgb"
    conditioning_embedding_out_channels: Tuple[int, ...] = (16, 32, 96, 256)
    global_pool_conditions: bool = False


# key -> the values msdiff implements; any other value changes the architecture and is refused.
_FIXED = {
    "act_fn": ("silu", "swish"), "class_embed_type": (None,), "num_class_embeds": (None,),
    "encoder_hid_dim": (None,), "encoder_hid_dim_type": (None,), "addition_embed_type": (None, "text_time"),
    "mid_block_type": ("UNetMidBlock2DCrossAttn",), "resnet_time_scale_shift": ("default", "scale_shift"),
    "controlnet_conditioning_channel_order": ("rgb", "bgr"),
}
# only used by addition_embed_type "text", which is refused above.
_IGNORED = {"addition_embed_type_num_heads"}


def config_from_diffusers(d: dict) -> ControlNetConfig:
    """ControlNetConfig from a diffusers config.json dict; ValueError names unsupported keys/values."""
    cfg = read_config(ControlNetConfig, d, "ControlNetModel", _FIXED, _IGNORED)
    for t in cfg.down_block_types:
        if t not in _DOWN:
            raise ValueError(f"ControlNetModel: block type {t!r} is not supported by msdiff")
    if not isinstance(cfg.layers_per_block, int):
        raise ValueError(f"ControlNetModel: layers_per_block must be an int, got {cfg.layers_per_block!r}")
    if cfg.norm_num_groups is None:
        raise ValueError("ControlNetModel: norm_num_groups=None is not supported by msdiff")
    if len(cfg.block_out_channels) != len(cfg.down_block_types):
        raise ValueError("ControlNetModel: block_out_channels and down_block_types differ in length")
    if cfg.addition_embed_type == "text_time" and not (cfg.addition_time_embed_dim
                                                       and cfg.projection_class_embeddings_input_dim):
        raise ValueError("ControlNetModel: addition_embed_type 'text_time' needs addition_time_embed_dim "
                         "and projection_class_embeddings_input_dim")
    return cfg


def map_weights(key: str) -> str:
    """diffusers state-dict key -> msdiff parameter name (identity: the trees match)."""
    return key


class ControlNetConditioningEmbedding(nn.Cell):
    """Control image -> latent-resolution features: conv_in, (conv, stride-2 conv) pairs with SiLU, zero conv_out."""

    def __init__(self, conditioning_embedding_channels: int, conditioning_channels: int = 3,
                 block_out_channels: Tuple[int, ...] = (16, 32, 96, 256), dtype=ms.float32):
        super().__init__()
        self.conv_in = Conv2d(conditioning_channels, block_out_channels[0], 3, padding=1, dtype=dtype)
        blocks = []
        for c_in, c_out in zip(block_out_channels[:-1], block_out_channels[1:]):
            blocks.append(Conv2d(c_in, c_in, 3, padding=1, dtype=dtype))
            blocks.append(Conv2d(c_in, c_out, 3, stride=2, padding=1, dtype=dtype))
        self.blocks = nn.CellList(blocks)
        self.conv_out = Conv2d(block_out_channels[-1], conditioning_embedding_channels, 3, padding=1, dtype=dtype)

    def construct(self, x: Float[Tensor, "b c H W"]) -> Float[Tensor, "b d h w"]:
        x = ops.silu(self.conv_in(x))
        for block in self.blocks:
            x = ops.silu(block(x))
        return self.conv_out(x)


def guess_mode_scales(num_down: int) -> tuple:
    """diffusers' guess-mode residual scales: torch.logspace(-1, 0, num_down + 1) in float32 (0.1 ... 1.0)."""
    return tuple(float(v) for v in np.power(10.0, np.linspace(-1.0, 0.0, num_down + 1)).astype(np.float32))


class ControlNetModel(TimeConditioned):
    """controlnet(sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale, text_embeds,
    time_ids, guess_mode) -> (down_block_res_samples tuple, mid_block_res_sample), the UNet's extra residuals."""

    net_name = "ControlNetModel"

    def __init__(self, config: ControlNetConfig, dtype=ms.float32):
        super().__init__()
        c = self.config = config
        self.compute_dtype = dtype
        n = len(c.down_block_types)
        boc = c.block_out_channels
        heads = per_block(c.num_attention_heads or c.attention_head_dim, n)
        temb = boc[0] * 4

        self.conv_in = Conv2d(c.in_channels, boc[0], 3, padding=1, dtype=dtype)
        self._init_time_embedding(c, temb, None, dtype)
        self.controlnet_cond_embedding = ControlNetConditioningEmbedding(
            boc[0], c.conditioning_channels, c.conditioning_embedding_out_channels, dtype=dtype)
        self.down_blocks = make_down_blocks(c, heads, temb, dtype)

        # one zero conv per skip of the encoder: conv_in's, each resnet's, each downsampler's
        zero = [Conv2d(boc[0], boc[0], 1, dtype=dtype)]
        for i, ch in enumerate(boc):
            zero += [Conv2d(ch, ch, 1, dtype=dtype) for _ in range(c.layers_per_block + (i < n - 1))]
        self.controlnet_down_blocks = nn.CellList(zero)
        self.controlnet_mid_block = Conv2d(boc[-1], boc[-1], 1, dtype=dtype)
        self.mid_block = make_mid_block(c, heads, temb, dtype)
        self.bgr = c.controlnet_conditioning_channel_order == "bgr"
        self.global_pool = c.global_pool_conditions
        self.log_scales = guess_mode_scales(len(zero))
        # Parameter names (not the attribute paths that map_weights and the loader use) get a prefix, because a
        # compiled graph rejects two parameters of one name and the UNet it runs beside has the same paths.
        self.update_parameters_name("controlnet.")

    def construct(self, sample: Float[Tensor, "b c h w"], timestep, encoder_hidden_states: Float[Tensor, "b n d"],
                  controlnet_cond: Float[Tensor, "b k H W"], conditioning_scale=1.0,
                  text_embeds: Float[Tensor, "b e"] = None, time_ids: Float[Tensor, "b t"] = None,
                  guess_mode: bool = False) -> tuple:
        """conditioning_scale (float or 0-d Tensor) multiplies every residual; guess_mode scales them from
        0.1 (first skip) to 1.0 (mid block) on a log scale; global_pool_conditions averages them spatially."""
        sample = sample.astype(self.compute_dtype)
        context = encoder_hidden_states.astype(self.compute_dtype)
        cond = controlnet_cond.astype(self.compute_dtype)
        if self.bgr:
            cond = mops.flip(cond, (1,))
        emb = self._time_embedding(timestep, sample.shape[0], text_embeds, time_ids, None)

        sample = self.conv_in(sample) + self.controlnet_cond_embedding(cond)
        skips = (sample,)
        for i in range(len(self.down_blocks)):
            sample, res = self.down_blocks[i](sample, emb, context)
            skips = skips + res
        sample = self.mid_block(sample, emb, context)

        # zero convs, then the residual scales
        down = ()
        for i in range(len(self.controlnet_down_blocks)):
            down = down + (self.controlnet_down_blocks[i](skips[i]),)
        mid = self.controlnet_mid_block(sample)
        if isinstance(conditioning_scale, Tensor):
            conditioning_scale = conditioning_scale.astype(ms.float32)
        if guess_mode and not self.global_pool:
            scaled = ()
            for i in range(len(down)):
                scaled = scaled + (down[i] * (self.log_scales[i] * conditioning_scale),)
            down = scaled
            mid = mid * (self.log_scales[-1] * conditioning_scale)
        else:
            scaled = ()
            for i in range(len(down)):
                scaled = scaled + (down[i] * conditioning_scale,)
            down = scaled
            mid = mid * conditioning_scale
        if self.global_pool:
            pooled = ()
            for i in range(len(down)):
                pooled = pooled + (down[i].mean(axis=(2, 3), keep_dims=True),)
            down = pooled
            mid = mid.mean(axis=(2, 3), keep_dims=True)
        out = ()
        for i in range(len(down)):
            out = out + (down[i].astype(self.compute_dtype),)
        return out, mid.astype(self.compute_dtype)
