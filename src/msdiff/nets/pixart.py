"""PixArtTransformer2DModel: diffusers' text-conditioned latent diffusion transformer (Chen et al. 2023, PixArt-alpha).

Patchify + sin-cos positions, blocks of modulated self-attention, cross-attention to the projected T5 caption and
modulated feed-forward, all modulated by one adaLN-single timestep embedding (plus resolution / aspect-ratio
embeddings when `use_additional_conditions`), then a final modulated LayerNorm, a linear projection and unpatchify.
The parameter tree has diffusers' names (`map_weights` is the identity, but drops a saved position table).
Checkpoints saved as `Transformer2DModel` with norm_type "ada_norm_single" (PixArt-alpha/PixArt-XL-2-*) read into
the same config, as diffusers remaps them.
"""
from dataclasses import dataclass
from typing import Optional

import mindspore as ms
from jaxtyping import Float, Int
from mindspore import Tensor, nn

from ..blocks.adaln import modulate
from ..blocks.adaln_single import (AdaLayerNormSingle, PixArtAlphaTextProjection, PixArtTransformerBlock,
                                   scale_shift_table)
from ..blocks.embeddings import batch_timesteps
from ..blocks.layers import LayerNorm, Linear
from ..blocks.patch_embed import PatchEmbed, unpatchify
from ._config import PatchTransformerDims, read_patch_transformer_config


@dataclass(frozen=True)
class PixArtConfig(PatchTransformerDims):
    """The architecture-defining fields of diffusers' PixArtTransformer2DModel config (defaults: PixArt-XL-2-1024)."""

    num_attention_heads: int = 16
    attention_head_dim: int = 72
    in_channels: int = 4
    out_channels: Optional[int] = 8
    num_layers: int = 28
    cross_attention_dim: Optional[int] = 1152
    attention_bias: bool = True
    sample_size: int = 128
    patch_size: int = 2
    activation_fn: str = "gelu-approximate"
    num_embeds_ada_norm: Optional[int] = 1000
    norm_elementwise_affine: bool = False
    norm_eps: float = 1e-6
    interpolation_scale: Optional[float] = None
    use_additional_conditions: Optional[bool] = None
    caption_channels: Optional[int] = None

    @property
    def additional_conditions(self) -> bool:
        """Whether resolution / aspect ratio condition the net (None means: only at sample_size 128, as diffusers)."""
        if self.use_additional_conditions is None:
            return self.sample_size == 128
        return self.use_additional_conditions

    @property
    def position_scale(self) -> float:
        """The position table's interpolation scale (None means max(sample_size // 64, 1), as diffusers)."""
        if self.interpolation_scale is None:
            return float(max(self.sample_size // 64, 1))
        return float(self.interpolation_scale)


# key -> the values msdiff implements; the Transformer2DModel keys describe that class's non-PixArt variants.
_FIXED = {
    "norm_type": ("ada_norm_single",),
    "activation_fn": ("gelu", "gelu-approximate", "geglu", "geglu-approximate"),
    "attention_type": ("default",), "num_vector_embeds": (None,), "only_cross_attention": (False,),
    "double_self_attention": (False,),
}
# Inference-neutral: dropout; upcast_attention (softmax is always fp32); norm_num_groups and use_linear_projection
# (unused with patch inputs, which is all diffusers' remap to PixArt keeps).
_IGNORED = ("dropout", "upcast_attention", "norm_num_groups", "use_linear_projection")


def config_from_diffusers(d: dict) -> PixArtConfig:
    """diffusers PixArtTransformer2DModel config.json (or Transformer2DModel, norm_type "ada_norm_single") -> config."""
    cfg = read_patch_transformer_config(PixArtConfig, d, "PixArtTransformer2DModel", "ada_norm_single", _FIXED,
                                        _IGNORED)
    if cfg.additional_conditions and cfg.inner_dim % 3:
        raise ValueError(f"PixArtTransformer2DModel: with additional conditions heads x head dim = {cfg.inner_dim} "
                         f"must be a multiple of 3 (resolution h, w and aspect ratio each take a third)")
    return cfg


def map_weights(key: str):
    """diffusers state-dict key -> msdiff parameter name (identical trees); a saved position table
    (`pos_embed.pos_embed`, a fixed sin-cos buffer msdiff recomputes) is dropped."""
    return None if key == "pos_embed.pos_embed" else key


class PixArtTransformer2DModel(nn.Cell):
    """net(latents [b, in, h, w], timestep, encoder_hidden_states [b, m, c], encoder_attention_mask [b, m] = None,
    resolution [b, 2] = None, aspect_ratio [b, 1] = None) -> [b, out_channels, h, w].

    timestep: a Python number, a scalar Tensor or a Tensor [b]. encoder_attention_mask: 0/1 per caption token (0:
    the token gets a -10000 score bias in cross-attention, as diffusers). resolution (height, width in pixels) and
    aspect_ratio (height / width) are required when the net uses additional conditions and ignored otherwise. h and
    w must be multiples of patch_size; other sizes than sample_size get a position table for their grid.
    """

    def __init__(self, config: PixArtConfig = PixArtConfig(), dtype=ms.float32):
        super().__init__()
        c = self.config = config
        self.compute_dtype = dtype
        dim = c.inner_dim
        self.pos_embed = PatchEmbed(c.sample_size, c.sample_size, c.patch_size, c.in_channels, dim,
                                    interpolation_scale=c.position_scale, dtype=dtype)
        self.transformer_blocks = nn.CellList([
            PixArtTransformerBlock(dim, c.num_attention_heads, c.attention_head_dim, c.cross_attention_dim,
                                   activation_fn=c.activation_fn, attention_bias=c.attention_bias,
                                   norm_elementwise_affine=c.norm_elementwise_affine, norm_eps=c.norm_eps, dtype=dtype)
            for _ in range(c.num_layers)])
        self.norm_out = LayerNorm(dim, eps=1e-6, elementwise_affine=False, dtype=dtype)
        self.scale_shift_table = scale_shift_table(2, dim, dtype)
        self.proj_out = Linear(dim, c.patch_size * c.patch_size * c.output_channels, dtype=dtype)
        self.adaln_single = AdaLayerNormSingle(dim, c.additional_conditions, dtype=dtype)
        self.caption_projection = (PixArtAlphaTextProjection(c.caption_channels, dim, dtype=dtype)
                                   if c.caption_channels is not None else None)

    def _check(self, shape: tuple, context, resolution, aspect_ratio) -> None:
        c = self.config
        if len(shape) != 4 or shape[1] != c.in_channels:
            raise ValueError(f"PixArtTransformer2DModel: expected latents [b, {c.in_channels}, h, w], got {shape}")
        if shape[2] % c.patch_size or shape[3] % c.patch_size:
            raise ValueError(f"PixArtTransformer2DModel: height and width must be multiples of patch_size "
                             f"{c.patch_size}, got {shape[2]}x{shape[3]}")
        width = c.caption_channels if c.caption_channels is not None else c.cross_attention_dim
        if c.cross_attention_dim is not None and (context is None or context.ndim != 3 or context.shape[2] != width):
            raise ValueError(f"PixArtTransformer2DModel: expected encoder_hidden_states [b, m, {width}], got "
                             f"{None if context is None else context.shape}")
        if c.additional_conditions and (resolution is None or aspect_ratio is None):
            raise ValueError("PixArtTransformer2DModel: this net uses additional conditions; pass resolution [b, 2] "
                             "(height, width) and aspect_ratio [b, 1] (height / width)")

    def construct(self, sample: Float[Tensor, "b c h w"], timestep,
                  encoder_hidden_states: Float[Tensor, "b m e"] = None,
                  encoder_attention_mask: Int[Tensor, "b m"] = None, resolution: Float[Tensor, "b 2"] = None,
                  aspect_ratio: Float[Tensor, "b 1"] = None) -> Float[Tensor, "b o h w"]:
        self._check(sample.shape, encoder_hidden_states, resolution, aspect_ratio)
        sample = sample.astype(self.compute_dtype)
        b, _, h, w = sample.shape
        t = batch_timesteps(timestep, b)
        if resolution is not None and self.config.additional_conditions:
            resolution = resolution.reshape(-1, 2).broadcast_to((b, 2))
            aspect_ratio = aspect_ratio.reshape(-1, 1).broadcast_to((b, 1))

        x = self.pos_embed(sample)
        modulation, embedded = self.adaln_single(t, resolution, aspect_ratio)
        context, mask = encoder_hidden_states, None
        if context is not None:
            context = context.astype(self.compute_dtype)
            if self.caption_projection is not None:
                context = self.caption_projection(context)
        if encoder_attention_mask is not None:
            keep = encoder_attention_mask.astype(ms.float32)
            mask = ((1.0 - keep) * -10000.0).reshape(b, 1, 1, -1)
        for block in self.transformer_blocks:
            x = block(x, modulation, context, mask)

        # final modulated LayerNorm: the net's 2-row table plus the timestep embedding
        mod = self.scale_shift_table[None] + embedded[:, None]
        shift, scale = mod[:, 0], mod[:, 1]
        x = self.proj_out(modulate(self.norm_out(x), shift, scale))
        p = self.config.patch_size
        return unpatchify(x, h // p, w // p, p, self.config.output_channels)
