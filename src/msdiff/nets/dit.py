"""DiTTransformer2DModel: diffusers' class-conditional latent diffusion transformer (Peebles & Xie 2023).

Patchify + sin-cos positions, adaLN-Zero transformer blocks, a final adaptive LayerNorm and a linear
unpatchify. The parameter tree has diffusers' names, so `map_weights` is the identity. Checkpoints saved as
`Transformer2DModel` with norm_type "ada_norm_zero" (facebook/DiT-XL-2-*) read into the same config, as
diffusers remaps them (the registry's Transformer2DModel dispatches on norm_type: nets/transformer_2d_legacy.py).
"""
from dataclasses import dataclass
from typing import Optional

import mindspore as ms
from jaxtyping import Float, Int
from mindspore import Tensor, nn

from .. import ops
from ..blocks.adaln import AdaLNZeroTransformerBlock, modulate
from ..blocks.embeddings import batch_timesteps
from ..blocks.layers import LayerNorm, Linear
from ..blocks.patch_embed import PatchEmbed, unpatchify
from ._config import PatchTransformerDims, read_patch_transformer_config


@dataclass(frozen=True)
class DiTConfig(PatchTransformerDims):
    """The architecture-defining fields of diffusers' DiTTransformer2DModel config (diffusers' defaults: DiT-XL/2)."""

    num_attention_heads: int = 16
    attention_head_dim: int = 72
    in_channels: int = 4
    out_channels: Optional[int] = None
    num_layers: int = 28
    attention_bias: bool = True
    sample_size: int = 32
    patch_size: int = 2
    activation_fn: str = "gelu-approximate"
    num_embeds_ada_norm: int = 1000
    norm_elementwise_affine: bool = False
    norm_eps: float = 1e-5


# key -> the values msdiff implements; anything else changes the architecture and is refused. The
# Transformer2DModel keys describe the non-DiT variants of that class; diffusers' remap to DiT drops them.
_FIXED = {
    "norm_type": ("ada_norm_zero",),
    "activation_fn": ("gelu", "gelu-approximate", "geglu", "geglu-approximate"),
    "cross_attention_dim": (None,), "num_vector_embeds": (None,), "only_cross_attention": (False,),
    "double_self_attention": (False,), "attention_type": ("default",), "caption_channels": (None,),
}
# Inference-neutral here: dropout; upcast_attention (softmax is always fp32); norm_num_groups (unused by DiT);
# and the Transformer2DModel keys DiT ignores after diffusers' remap.
_IGNORED = ("dropout", "upcast_attention", "norm_num_groups", "use_linear_projection", "interpolation_scale",
            "use_additional_conditions")


def config_from_diffusers(d: dict) -> DiTConfig:
    """diffusers DiTTransformer2DModel config.json (or Transformer2DModel, norm_type "ada_norm_zero") -> DiTConfig."""
    return read_patch_transformer_config(DiTConfig, d, "DiTTransformer2DModel", "ada_norm_zero", _FIXED, _IGNORED)


def map_weights(key: str) -> str:
    """diffusers state-dict key -> msdiff parameter name (identical trees)."""
    return key


class DiTTransformer2DModel(nn.Cell):
    """net(latents [b, in_channels, h, w], timestep, class_labels [b]) -> [b, out_channels, h, w].

    timestep: a Python number, a scalar Tensor or a Tensor [b]; class_labels: int Tensor [b] in
    [0, num_embeds_ada_norm], the last value being the null class. h and w must be multiples of patch_size;
    sizes other than sample_size get position tables for their grid (diffusers reshapes its output as a square
    grid, so it agrees only on square inputs).
    """

    def __init__(self, config: DiTConfig = DiTConfig(), dtype=ms.float32):
        super().__init__()
        c = self.config = config
        self.compute_dtype = dtype
        dim = c.inner_dim
        self.pos_embed = PatchEmbed(c.sample_size, c.sample_size, c.patch_size, c.in_channels, dim, dtype=dtype)
        self.transformer_blocks = nn.CellList([
            AdaLNZeroTransformerBlock(dim, c.num_attention_heads, c.attention_head_dim, c.num_embeds_ada_norm,
                                      activation_fn=c.activation_fn, attention_bias=c.attention_bias,
                                      norm_elementwise_affine=c.norm_elementwise_affine, norm_eps=c.norm_eps,
                                      dtype=dtype)
            for _ in range(c.num_layers)])
        self.norm_out = LayerNorm(dim, eps=1e-6, elementwise_affine=False, dtype=dtype)
        self.proj_out_1 = Linear(dim, 2 * dim, dtype=dtype)
        self.proj_out_2 = Linear(dim, c.patch_size * c.patch_size * c.output_channels, dtype=dtype)

    def _check(self, shape: tuple) -> None:
        c = self.config
        if len(shape) != 4 or shape[1] != c.in_channels:
            raise ValueError(f"DiTTransformer2DModel: expected latents [b, {c.in_channels}, h, w], got {shape}")
        if shape[2] % c.patch_size or shape[3] % c.patch_size:
            raise ValueError(f"DiTTransformer2DModel: height and width must be multiples of patch_size "
                             f"{c.patch_size}, got {shape[2]}x{shape[3]}")

    def construct(self, sample: Float[Tensor, "b c h w"], timestep,
                  class_labels: Int[Tensor, "b"]) -> Float[Tensor, "b o h w"]:
        self._check(sample.shape)
        sample = sample.astype(self.compute_dtype)
        b, _, h, w = sample.shape
        t = batch_timesteps(timestep, b)
        y = class_labels.astype(ms.int32).reshape(-1)
        if y.shape[0] != b:
            y = y.broadcast_to((b,))

        x = self.pos_embed(sample)
        for block in self.transformer_blocks:
            x = block(x, t, y)

        # final adaptive LayerNorm, conditioned through the first block's embedding (as diffusers does)
        cond = self.transformer_blocks[0].norm1.emb(t, y)
        shift, scale = self.proj_out_1(ops.silu(cond)).chunk(2, axis=1)
        x = self.proj_out_2(modulate(self.norm_out(x), shift, scale))
        p = self.config.patch_size
        return unpatchify(x, h // p, w // p, p, self.config.output_channels)
