"""UNet2DConditionModel of Stable Diffusion 1.x / 2.x / XL (base, refiner), inpainting, InstructPix2Pix and LCM,
and of Kandinsky 2.1 / 2.2 and unCLIP (simple-cross-attention blocks, image / text-image embeddings, class labels).

The parameter tree has diffusers' names, so `map_weights` is the identity. Attention softmax is
always fp32 (msdiff.ops.attention), which makes `upcast_attention` a no-op kept only in the config.
Extra conditioning comes as diffusers' `added_cond_kwargs` dict ("text_embeds", "time_ids", "image_embeds",
"hint") or, for SD-XL's two, as explicit arguments; `class_labels` and `attention_mask` as in diffusers.
"""
from dataclasses import dataclass, replace
from typing import Optional, Tuple, Union

import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from ..blocks.added_embeddings import (ImageHintTimeEmbedding, ImageProjection, ImageTimeEmbedding,
                                       TextImageProjection, TextImageTimeEmbedding, TextTimeEmbedding)
from ..blocks.embeddings import TimestepEmbedding, Timesteps, batch_timesteps
from ..blocks.gligen import add_fusers, position_net
from ..blocks.layers import Conv2d, Embedding, GroupNorm, Linear
from ..blocks.simple_cross_attn import (ResnetDownsampleBlock2D, ResnetUpsampleBlock2D, SimpleCrossAttnDownBlock2D,
                                        SimpleCrossAttnUpBlock2D, UNetMidBlock2DSimpleCrossAttn)
from ..blocks.unet_2d_blocks import (CrossAttnDownBlock2D, CrossAttnUpBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn,
                                     UpBlock2D)
from .. import ops
from ._config import read_config

IntOrTuple = Union[int, Tuple]


@dataclass(frozen=True)
class UNet2DConditionConfig:
    """The architecture-defining fields of diffusers' UNet2DConditionModel config (diffusers' defaults)."""

    sample_size: Optional[IntOrTuple] = None
    in_channels: int = 4
    out_channels: int = 4
    center_input_sample: bool = False
    flip_sin_to_cos: bool = True
    freq_shift: float = 0
    down_block_types: Tuple[str, ...] = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                         "DownBlock2D")
    mid_block_type: str = "UNetMidBlock2DCrossAttn"
    up_block_types: Tuple[str, ...] = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
    only_cross_attention: Union[bool, Tuple[bool, ...]] = False
    block_out_channels: Tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: IntOrTuple = 2
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    cross_attention_dim: IntOrTuple = 1280
    transformer_layers_per_block: IntOrTuple = 1
    reverse_transformer_layers_per_block: Optional[Tuple] = None
    attention_head_dim: IntOrTuple = 8
    use_linear_projection: bool = False
    upcast_attention: bool = False
    resnet_time_scale_shift: str = "default"
    time_embedding_dim: Optional[int] = None
    time_cond_proj_dim: Optional[int] = None
    addition_embed_type: Optional[str] = None
    addition_time_embed_dim: Optional[int] = None
    addition_embed_type_num_heads: int = 64
    projection_class_embeddings_input_dim: Optional[int] = None
    encoder_hid_dim: Optional[int] = None
    encoder_hid_dim_type: Optional[str] = None
    class_embed_type: Optional[str] = None
    num_class_embeds: Optional[int] = None
    time_embedding_act_fn: Optional[str] = None
    resnet_skip_time_act: bool = False
    resnet_out_scale_factor: float = 1.0
    mid_block_only_cross_attention: Optional[bool] = None
    cross_attention_norm: Optional[str] = None
    conv_in_kernel: int = 3
    conv_out_kernel: int = 3
    attention_type: str = "default"
    act_fn: str = "silu"  # "gelu": DeepFloyd IF (resnets, time / class embeddings, the output activation)


# key -> the values msdiff implements; any other value changes the architecture and is refused.
_FIXED = {
    "act_fn": ("silu", "swish", "gelu"), "class_embed_type": (None, "timestep", "identity", "projection"),
    "class_embeddings_concat": (False,), "encoder_hid_dim_type": (None, "text_proj", "text_image_proj", "image_proj"),
    "time_embedding_type": ("positional",), "time_embedding_act_fn": (None, "silu", "swish", "gelu"),
    "timestep_post_act": (None,), "attention_type": ("default", "gated", "gated-text-image"),
    "cross_attention_norm": (None, "group_norm"),
    "dual_cross_attention": (False,), "num_attention_heads": (None,),
    "addition_embed_type": (None, "text_time", "text", "text_image", "image", "image_hint"),
    "mid_block_type": ("UNetMidBlock2DCrossAttn", "UNetMidBlock2DSimpleCrossAttn"),
    "resnet_time_scale_shift": ("default", "scale_shift"),
}
# keys with no effect at inference.
_IGNORED = {"dropout"}
_DOWN = {"DownBlock2D": DownBlock2D, "CrossAttnDownBlock2D": CrossAttnDownBlock2D}
_UP = {"UpBlock2D": UpBlock2D, "CrossAttnUpBlock2D": CrossAttnUpBlock2D}
# the resnet-resampled blocks: take the resnet_skip_time_act / resnet_out_scale_factor keys, heads from head dims.
_SIMPLE_DOWN = {"ResnetDownsampleBlock2D": ResnetDownsampleBlock2D,
                "SimpleCrossAttnDownBlock2D": SimpleCrossAttnDownBlock2D}
_SIMPLE_UP = {"ResnetUpsampleBlock2D": ResnetUpsampleBlock2D, "SimpleCrossAttnUpBlock2D": SimpleCrossAttnUpBlock2D}
# addition_embed_type / encoder_hid_dim_type / class_embed_type -> what the construct call needs
_NEEDS = {"text_image": ("image_embeds",), "image": ("image_embeds",), "image_hint": ("image_embeds", "hint"),
          "text_image_proj": ("image_embeds",), "image_proj": ("image_embeds",)}


def config_from_diffusers(d: dict) -> UNet2DConditionConfig:
    """UNet2DConditionConfig from a diffusers config.json dict; ValueError names unsupported keys/values."""
    cfg = read_config(UNet2DConditionConfig, d, "UNet2DConditionModel", _FIXED, _IGNORED)
    name = "UNet2DConditionModel"
    for t in cfg.down_block_types + cfg.up_block_types:
        if t not in _DOWN and t not in _UP and t not in _SIMPLE_DOWN and t not in _SIMPLE_UP:
            raise ValueError(f"{name}: block type {t!r} is not supported by msdiff")
    if cfg.norm_num_groups is None:
        raise ValueError(f"{name}: norm_num_groups=None is not supported by msdiff")
    plain = [t for t in cfg.down_block_types + cfg.up_block_types + (cfg.mid_block_type,)
             if t not in _SIMPLE_DOWN and t not in _SIMPLE_UP and t != "UNetMidBlock2DSimpleCrossAttn"]
    if cfg.act_fn == "gelu" and plain:
        raise ValueError(f"{name}: act_fn 'gelu' is supported with the simple-cross-attention / resnet-resampled "
                         f"blocks only (DeepFloyd IF), not with {plain[0]!r}")
    if cfg.addition_embed_type == "text_time" and not (cfg.addition_time_embed_dim
                                                       and cfg.projection_class_embeddings_input_dim):
        raise ValueError(f"{name}: addition_embed_type 'text_time' needs addition_time_embed_dim "
                         "and projection_class_embeddings_input_dim")
    if cfg.encoder_hid_dim is not None and cfg.encoder_hid_dim_type is None:
        cfg = replace(cfg, encoder_hid_dim_type="text_proj")  # diffusers' default for a given encoder_hid_dim
    if cfg.encoder_hid_dim_type is not None and cfg.encoder_hid_dim is None:
        raise ValueError(f"{name}: encoder_hid_dim_type {cfg.encoder_hid_dim_type!r} needs encoder_hid_dim")
    if cfg.addition_embed_type in ("image", "image_hint") and cfg.encoder_hid_dim is None:
        raise ValueError(f"{name}: addition_embed_type {cfg.addition_embed_type!r} needs encoder_hid_dim")
    if cfg.class_embed_type == "projection" and cfg.projection_class_embeddings_input_dim is None:
        raise ValueError(f"{name}: class_embed_type 'projection' needs projection_class_embeddings_input_dim")
    if (cfg.addition_embed_type in ("text", "text_image") or cfg.encoder_hid_dim_type is not None) \
            and not isinstance(cfg.cross_attention_dim, int):
        raise ValueError(f"{name}: addition_embed_type / encoder_hid_dim_type need an int cross_attention_dim")
    return cfg


def map_weights(key: str) -> str:
    """diffusers state-dict key -> msdiff parameter name (identity: the trees match)."""
    return key


def per_block(value, n: int) -> tuple:
    """A per-down-block config value as a tuple of n (an int/bool/None is repeated)."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _simple_kwargs(c, kind: str, head_dim, cross_dim, only_cross: bool) -> dict:
    """Constructor arguments of the resnet-resampled blocks beyond the common ones."""
    kwargs = dict(skip_time_act=c.resnet_skip_time_act, output_scale_factor=c.resnet_out_scale_factor,
                  resnet_act_fn=getattr(c, "act_fn", "silu"))
    if kind.startswith("SimpleCrossAttn"):
        kwargs.update(attention_head_dim=head_dim, cross_attention_dim=cross_dim, only_cross_attention=only_cross,
                      cross_attention_norm=c.cross_attention_norm)
    return kwargs


def make_down_blocks(c, heads: tuple, temb: int, dtype) -> nn.CellList:
    """The down blocks of a UNet2DCondition-style encoder (the UNet's and the ControlNet's) from config `c`;
    `heads` is the per-block attention_head_dim (heads for CrossAttn blocks, head size for SimpleCrossAttn)."""
    n = len(c.down_block_types)
    boc = c.block_out_channels
    cross = per_block(c.cross_attention_dim, n)
    layers = per_block(c.layers_per_block, n)
    depth = per_block(c.transformer_layers_per_block, n)
    only_cross = per_block(c.only_cross_attention, n)
    down = []
    out_ch = boc[0]
    for i, kind in enumerate(c.down_block_types):
        in_ch, out_ch = out_ch, boc[i]
        common = dict(num_layers=layers[i], resnet_eps=c.norm_eps, resnet_time_scale_shift=c.resnet_time_scale_shift,
                      resnet_groups=c.norm_num_groups, add_downsample=i < n - 1, dtype=dtype)
        if kind in _SIMPLE_DOWN:
            common.update(_simple_kwargs(c, kind, heads[i] or out_ch, cross[i], only_cross[i]))
            down.append(_SIMPLE_DOWN[kind](in_ch, out_ch, temb, **common))
            continue
        common["downsample_padding"] = c.downsample_padding
        if kind == "CrossAttnDownBlock2D":
            common.update(transformer_layers_per_block=depth[i], num_attention_heads=heads[i],
                          cross_attention_dim=cross[i], use_linear_projection=c.use_linear_projection,
                          only_cross_attention=only_cross[i])
        down.append(_DOWN[kind](in_ch, out_ch, temb, **common))
    return nn.CellList(down)


def make_mid_block(c, heads: tuple, temb: int, dtype) -> nn.Cell:
    """The mid block of a UNet2DCondition-style encoder from config `c`."""
    n = len(c.down_block_types)
    cross = per_block(c.cross_attention_dim, n)[-1]
    common = dict(resnet_eps=c.norm_eps, resnet_time_scale_shift=c.resnet_time_scale_shift,
                  resnet_groups=c.norm_num_groups, output_scale_factor=c.mid_block_scale_factor, dtype=dtype)
    if c.mid_block_type == "UNetMidBlock2DSimpleCrossAttn":
        only_cross = c.mid_block_only_cross_attention
        if only_cross is None:
            only_cross = c.only_cross_attention if isinstance(c.only_cross_attention, bool) else False
        return UNetMidBlock2DSimpleCrossAttn(
            c.block_out_channels[-1], temb, attention_head_dim=heads[-1], cross_attention_dim=cross,
            skip_time_act=c.resnet_skip_time_act, only_cross_attention=only_cross,
            cross_attention_norm=c.cross_attention_norm, resnet_act_fn=getattr(c, "act_fn", "silu"), **common)
    return UNetMidBlock2DCrossAttn(
        c.block_out_channels[-1], temb, transformer_layers_per_block=per_block(c.transformer_layers_per_block, n)[-1],
        num_attention_heads=heads[-1], cross_attention_dim=cross, use_linear_projection=c.use_linear_projection,
        **common)


class TimeConditioned(nn.Cell):
    """Base Cell of the UNet and the ControlNet: timestep embedding plus SD-XL's text_time added embedding,
    with diffusers' attribute names (time_proj, time_embedding, add_time_proj, add_embedding)."""

    net_name = "UNet2DConditionModel"

    def _init_time_embedding(self, c, temb: int, cond_proj_dim, dtype) -> None:
        boc0 = c.block_out_channels[0]
        self.time_proj = Timesteps(boc0, c.flip_sin_to_cos, c.freq_shift)
        self.time_embedding = TimestepEmbedding(boc0, temb, cond_proj_dim=cond_proj_dim, dtype=dtype,
                                                act_fn=getattr(c, "act_fn", "silu"))
        self.add_time_proj = self.add_embedding = None
        if c.addition_embed_type == "text_time":
            self.add_time_proj = Timesteps(c.addition_time_embed_dim, c.flip_sin_to_cos, c.freq_shift)
            self.add_embedding = TimestepEmbedding(c.projection_class_embeddings_input_dim, temb, dtype=dtype)

    def _time_embedding(self, timestep, b: int, text_embeds, time_ids, timestep_cond) -> Tensor:
        t = batch_timesteps(timestep, b)
        cond = None if timestep_cond is None else timestep_cond.astype(self.compute_dtype)
        emb = self.time_embedding(self.time_proj(t).astype(self.compute_dtype), cond)
        if self.add_time_proj is not None:
            if text_embeds is None or time_ids is None:
                raise ValueError(f"{self.net_name}: addition_embed_type 'text_time' needs text_embeds and "
                                 "time_ids")
            time_embeds = self.add_time_proj(time_ids.reshape(-1)).reshape(text_embeds.shape[0], -1)
            added = mops.cat((text_embeds.astype(ms.float32), time_embeds), axis=-1).astype(self.compute_dtype)
            emb = emb + self.add_embedding(added)
        return emb


def _added(kwargs, key: str, value=None):
    """value, else added_cond_kwargs[key] when the dict has it, else None."""
    if value is None and kwargs is not None and key in kwargs:
        value = kwargs[key]
    return value


def _extra_conditioning(c, temb: int, dtype) -> tuple:
    """(encoder_hid_proj, class_embedding, add_embedding) Cells of config `c` (None where absent); SD-XL's
    text_time add_embedding is TimeConditioned's."""
    hid, cross = c.encoder_hid_dim, c.cross_attention_dim
    proj = {None: None, "text_proj": lambda: Linear(hid, cross, dtype=dtype),
            "text_image_proj": lambda: TextImageProjection(hid, cross, cross, dtype=dtype),
            "image_proj": lambda: ImageProjection(hid, cross, dtype=dtype)}[c.encoder_hid_dim_type]
    boc0 = c.block_out_channels[0]
    act = c.act_fn
    klass = {None: None, "identity": None, "timestep": lambda: TimestepEmbedding(boc0, temb, dtype=dtype, act_fn=act),
             "projection": lambda: TimestepEmbedding(c.projection_class_embeddings_input_dim, temb, dtype=dtype,
                                                     act_fn=act)}
    klass = klass[c.class_embed_type]
    if c.class_embed_type is None and c.num_class_embeds is not None:
        klass = lambda: Embedding(c.num_class_embeds, temb, dtype=dtype)  # noqa: E731
    add = {"text": lambda: TextTimeEmbedding(hid or cross, temb, c.addition_embed_type_num_heads, dtype=dtype),
           "text_image": lambda: TextImageTimeEmbedding(cross, cross, temb, dtype=dtype),
           "image": lambda: ImageTimeEmbedding(hid, temb, dtype=dtype),
           "image_hint": lambda: ImageHintTimeEmbedding(hid, temb, dtype=dtype)}.get(c.addition_embed_type)
    return tuple(None if f is None else f() for f in (proj, klass, add))


class UNet2DConditionModel(TimeConditioned):
    """Noise-prediction UNet: unet(sample, timestep, encoder_hidden_states, text_embeds=None, time_ids=None,
    timestep_cond=None, ..., added_cond_kwargs=None, class_labels=None, attention_mask=None) -> eps (or v, or
    eps with learned variance), a Tensor shaped like sample with out_channels."""

    def __init__(self, config: UNet2DConditionConfig, dtype=ms.float32):
        super().__init__()
        c = self.config = config
        self.compute_dtype = dtype
        n = len(c.down_block_types)
        boc = c.block_out_channels
        # diffusers names the per-block head count `attention_head_dim` (its issue #2011); the SimpleCrossAttn
        # blocks read the same value as the head size.
        heads = per_block(c.attention_head_dim, n)
        cross = per_block(c.cross_attention_dim, n)
        layers = per_block(c.layers_per_block, n)
        depth = per_block(c.transformer_layers_per_block, n)
        only_cross = per_block(c.only_cross_attention, n)
        groups, eps, shift = c.norm_num_groups, c.norm_eps, c.resnet_time_scale_shift

        self.conv_in = Conv2d(c.in_channels, boc[0], c.conv_in_kernel, padding=(c.conv_in_kernel - 1) // 2,
                              dtype=dtype)
        temb = c.time_embedding_dim or boc[0] * 4
        self._init_time_embedding(c, temb, c.time_cond_proj_dim, dtype)
        self.encoder_hid_proj, self.class_embedding, extra_add = _extra_conditioning(c, temb, dtype)
        if extra_add is not None:
            self.add_embedding = extra_add
        self.down_blocks = make_down_blocks(c, heads, temb, dtype)
        self.mid_block = make_mid_block(c, heads, temb, dtype)

        rev = tuple(reversed(boc))
        rev_depth = c.reverse_transformer_layers_per_block or tuple(reversed(depth))
        up = []
        out_ch = rev[0]
        for i, kind in enumerate(c.up_block_types):
            prev_ch, out_ch, in_ch = out_ch, rev[i], rev[min(i + 1, n - 1)]
            common = dict(num_layers=layers[n - 1 - i] + 1, resnet_eps=eps, resnet_time_scale_shift=shift,
                          resnet_groups=groups, add_upsample=i < n - 1, dtype=dtype)
            if kind in _SIMPLE_UP:
                # diffusers passes these blocks attention_head_dim[i] unreversed (cross and only_cross reversed)
                common.update(_simple_kwargs(c, kind, heads[i] or out_ch, cross[n - 1 - i], only_cross[n - 1 - i]))
                up.append(_SIMPLE_UP[kind](in_ch, prev_ch, out_ch, temb, **common))
                continue
            if kind == "CrossAttnUpBlock2D":
                common.update(transformer_layers_per_block=rev_depth[i], num_attention_heads=heads[n - 1 - i],
                              cross_attention_dim=cross[n - 1 - i], use_linear_projection=c.use_linear_projection,
                              only_cross_attention=only_cross[n - 1 - i])
            up.append(_UP[kind](in_ch, prev_ch, out_ch, temb, **common))
        self.up_blocks = nn.CellList(up)
        self.num_upsamplers = n - 1
        self.masked = tuple(k in _SIMPLE_DOWN for k in c.down_block_types)
        self.masked_up = tuple(k in _SIMPLE_UP for k in c.up_block_types)

        self.conv_norm_out = GroupNorm(groups, boc[0], eps=eps, dtype=dtype)
        self.conv_out = Conv2d(boc[0], c.out_channels, c.conv_out_kernel, padding=(c.conv_out_kernel - 1) // 2,
                               dtype=dtype)
        self.position_net = None
        if c.attention_type != "default":  # GLIGEN: grounding tokens fused into every transformer block
            add_fusers(self, dtype)
            self.position_net = position_net(c.attention_type, c.cross_attention_dim, dtype)

    def _class_embedding(self, class_labels, b: int):
        kind = self.config.class_embed_type
        if class_labels is None:
            raise ValueError(f"UNet2DConditionModel: class_embed_type {kind!r} / num_class_embeds need class_labels")
        if kind == "timestep":
            return self.class_embedding(self.time_proj(batch_timesteps(class_labels, b)).astype(self.compute_dtype))
        if kind is None:
            return self.class_embedding(class_labels)
        labels = class_labels.astype(self.compute_dtype)
        return labels if kind == "identity" else self.class_embedding(labels)

    def _embeddings(self, sample, timestep, context, text_embeds, time_ids, timestep_cond, added, class_labels):
        """(time embedding with every addition, cross-attention context, sample with a hint's channels)."""
        c = self.config
        b = sample.shape[0]
        emb = self._time_embedding(timestep, b, _added(added, "text_embeds", text_embeds),
                                   _added(added, "time_ids", time_ids), timestep_cond)
        if self.class_embedding is not None or c.class_embed_type == "identity":
            emb = emb + self._class_embedding(class_labels, b)
        kinds = (c.addition_embed_type, c.encoder_hid_dim_type)
        for key in _NEEDS.get(kinds[0], ()) + _NEEDS.get(kinds[1], ()):
            if _added(added, key) is None:
                raise ValueError(f"UNet2DConditionModel: addition_embed_type / encoder_hid_dim_type {kinds} need "
                                 f"added_cond_kwargs[{key!r}]")
        image = _added(added, "image_embeds")
        image = None if image is None else image.astype(self.compute_dtype)
        if c.addition_embed_type == "text":
            emb = emb + self.add_embedding(context)
        elif c.addition_embed_type == "text_image":
            text = _added(added, "text_embeds", text_embeds)
            text = context if text is None else text.astype(self.compute_dtype)
            emb = emb + self.add_embedding(text, image)
        elif c.addition_embed_type == "image":
            emb = emb + self.add_embedding(image)
        elif c.addition_embed_type == "image_hint":
            emb = emb + self.add_embedding(image)
            hint = self.add_embedding.embed_hint(_added(added, "hint").astype(self.compute_dtype))
            sample = mops.cat((sample, hint), axis=1)
        if c.time_embedding_act_fn == "gelu":
            emb = ops.gelu(emb)
        elif c.time_embedding_act_fn is not None:
            emb = ops.silu(emb)
        if c.encoder_hid_dim_type == "text_proj":
            context = self.encoder_hid_proj(context)
        elif c.encoder_hid_dim_type == "text_image_proj":
            context = self.encoder_hid_proj(context, image)
        elif c.encoder_hid_dim_type == "image_proj":
            context = self.encoder_hid_proj(image)
        return emb, context, sample

    def construct(self, sample: Float[Tensor, "b c h w"], timestep, encoder_hidden_states: Float[Tensor, "b n d"],
                  text_embeds: Float[Tensor, "b e"] = None, time_ids: Float[Tensor, "b k"] = None,
                  timestep_cond: Float[Tensor, "b p"] = None, down_block_additional_residuals: tuple = None,
                  mid_block_additional_residual: Float[Tensor, "b c h2 w2"] = None,
                  down_intrablock_additional_residuals: tuple = None, added_cond_kwargs: dict = None,
                  class_labels: Tensor = None, attention_mask: Float[Tensor, "b n"] = None,
                  gligen: tuple = None) -> Float[Tensor, "b o h w"]:
        """ControlNet residuals (one per skip, plus the mid-block's; both or neither) are added to the skips
        and the mid-block output; T2I-Adapter features (down_intrablock_additional_residuals) go one per down
        block in order, and a remaining one of the mid-block's shape is added to its output (T2I-Adapter-XL).
        attention_mask (1 keep, 0 drop) masks the context tokens in the simple-cross-attention blocks (unCLIP).
        gligen: the position_net's inputs, then the fuser scale: (boxes, masks, phrase embeddings, scale) for
        attention_type "gated", (boxes, masks, phrases_masks, image_masks, phrase embeddings, image embeddings,
        scale) for "gated-text-image"; the transformer blocks then get (context, grounding tokens, scale) (blocks/gligen.py)."""
        sample = sample.astype(self.compute_dtype)
        context = None if encoder_hidden_states is None else encoder_hidden_states.astype(self.compute_dtype)
        b, _, h, w = sample.shape
        factor = 2 ** self.num_upsamplers
        forward_upsample_size = h % factor != 0 or w % factor != 0
        if self.config.center_input_sample:
            sample = 2 * sample - 1.0
        emb, context, sample = self._embeddings(sample, timestep, context, text_embeds, time_ids, timestep_cond,
                                                added_cond_kwargs, class_labels)
        if gligen is not None:
            if self.position_net is None:
                raise ValueError("UNet2DConditionModel: gligen inputs need a GLIGEN UNet (attention_type 'gated' "
                                 "or 'gated-text-image')")
            context = (context, self.position_net(*gligen[:-1]), gligen[-1])
        mask = None
        if attention_mask is not None:
            mask = ((1 - attention_mask.astype(self.compute_dtype)) * -10000.0).reshape(b, 1, -1)

        # down path: every resnet/attention output and downsample is a skip
        sample = self.conv_in(sample)
        skips = (sample,)
        adapter = down_intrablock_additional_residuals
        used = 0
        for i in range(len(self.down_blocks)):
            extra = None
            if adapter is not None and used < len(adapter):
                extra = adapter[used].astype(self.compute_dtype)
                used += 1
            if self.masked[i]:
                sample, res = self.down_blocks[i](sample, emb, context, extra, mask)
            else:
                sample, res = self.down_blocks[i](sample, emb, context, extra)
            skips = skips + res
        controlnet = down_block_additional_residuals is not None and mid_block_additional_residual is not None
        if controlnet:
            with_control = ()
            for i in range(min(len(skips), len(down_block_additional_residuals))):
                with_control = with_control + (skips[i] + down_block_additional_residuals[i].astype(self.compute_dtype),)
            skips = with_control
        if self.config.mid_block_type == "UNetMidBlock2DSimpleCrossAttn":
            sample = self.mid_block(sample, emb, context, mask)
        else:
            sample = self.mid_block(sample, emb, context)
        if adapter is not None and used < len(adapter) and adapter[used].shape == sample.shape:
            sample = sample + adapter[used].astype(self.compute_dtype)
        if controlnet:
            sample = sample + mid_block_additional_residual.astype(self.compute_dtype)

        # up path: each up block eats as many skips as it has resnets
        for i in range(len(self.up_blocks)):
            block = self.up_blocks[i]
            k = len(block.resnets)
            res, skips = skips[len(skips) - k:], skips[:len(skips) - k]
            size = None
            if forward_upsample_size and i < len(self.up_blocks) - 1:
                size = skips[-1].shape[2:]
            if self.masked_up[i]:
                sample = block(sample, res, emb, context, size, mask)
            else:
                sample = block(sample, res, emb, context, size)

        sample = ops.activate(self.conv_norm_out(sample), self.config.act_fn)
        return self.conv_out(sample)
