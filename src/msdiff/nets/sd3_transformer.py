"""SD3Transformer2DModel: diffusers' MMDiT of Stable Diffusion 3 / 3.5 (Esser et al. 2024).

Patchify + a centre-cropped position table, the text context projected to the transformer width, a conditioning
vector (sinusoidal timestep MLP + projected pooled text), a stack of joint-attention blocks over [image | text]
tokens (the last one, context_pre_only, drops the text stream), then AdaLayerNormContinuous, a linear projection
and unpatchify. The parameter tree has diffusers' names (`map_weights` is the identity). SD3.5's per-head
RMS q/k norms (qk_norm "rms_norm") and dual-attention layers are supported.
"""
from dataclasses import dataclass
from typing import Optional

import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn

from ..blocks.embeddings import batch_timesteps
from ..blocks.joint_attention import (QK_NORMS, AdaLayerNormContinuous, CombinedTimestepTextProjEmbeddings,
                                      CroppedPatchEmbed, JointTransformerBlock)
from ..blocks.layers import Linear
from ..blocks.patch_embed import unpatchify
from ._config import PatchTransformerDims, read_config


@dataclass(frozen=True)
class SD3TransformerConfig(PatchTransformerDims):
    """The fields of diffusers' SD3Transformer2DModel config (defaults: diffusers' own defaults)."""

    sample_size: int = 128
    patch_size: int = 2
    in_channels: int = 16
    num_layers: int = 18
    attention_head_dim: int = 64
    num_attention_heads: int = 18
    joint_attention_dim: int = 4096
    caption_projection_dim: int = 1152
    pooled_projection_dim: int = 2048
    out_channels: Optional[int] = 16
    pos_embed_max_size: int = 96
    dual_attention_indices: tuple = ()  # diffusers' dual_attention_layers (block indices, 0 allowed)
    qk_norm: Optional[str] = None


NET = "SD3Transformer2DModel"


def config_from_diffusers(d: dict) -> SD3TransformerConfig:
    """diffusers SD3Transformer2DModel config.json -> config; ValueError for a combination msdiff does not build."""
    if d.get("pos_embed_max_size", 96) is None:
        raise ValueError(f"{NET}: config pos_embed_max_size=None is not supported (every SD3 checkpoint sets it)")
    d = dict(d)
    indices = d.pop("dual_attention_layers", ())
    if not isinstance(indices, (list, tuple)):
        raise ValueError(f"{NET}: config dual_attention_layers={indices!r} must be a list of block indices")
    cfg = read_config(SD3TransformerConfig, dict(d, dual_attention_indices=list(indices)), NET)
    if cfg.qk_norm not in QK_NORMS:
        raise ValueError(f"{NET}: config qk_norm={cfg.qk_norm!r} is not supported (supported: {QK_NORMS})")
    if cfg.caption_projection_dim != cfg.inner_dim:
        raise ValueError(f"{NET}: caption_projection_dim {cfg.caption_projection_dim} must equal heads x head dim "
                         f"{cfg.inner_dim} (the text stream shares the joint attention width)")
    if cfg.inner_dim % 4:
        raise ValueError(f"{NET}: heads x head dim = {cfg.inner_dim} must be a multiple of 4 (2D sin-cos positions)")
    bad = [i for i in cfg.dual_attention_indices if not (isinstance(i, int) and 0 <= i < cfg.num_layers)]
    if bad:
        raise ValueError(f"{NET}: dual_attention_layers {bad} are not block indices 0..{cfg.num_layers - 1}")
    return cfg


def map_weights(key: str):
    """diffusers state-dict key -> msdiff parameter name: identical trees (the saved `pos_embed.pos_embed` table
    is a frozen parameter here)."""
    return key


class SD3Transformer2DModel(nn.Cell):
    """net(latents [b, in, h, w], timestep, encoder_hidden_states [b, m, joint_attention_dim],
    pooled_projections [b, pooled_projection_dim]) -> [b, out_channels, h, w].

    timestep: a Python number, a scalar Tensor or a Tensor [b] (diffusers' SD3 timesteps are sigma * 1000).
    h and w must be multiples of patch_size, and h / patch_size, w / patch_size at most pos_embed_max_size.
    """

    def __init__(self, config: SD3TransformerConfig = SD3TransformerConfig(), dtype=ms.float32):
        super().__init__()
        c = self.config = config
        self.compute_dtype = dtype
        dim = c.inner_dim
        self.pos_embed = CroppedPatchEmbed(c.sample_size, c.patch_size, c.in_channels, dim, c.pos_embed_max_size,
                                           dtype=dtype)
        self.time_text_embed = CombinedTimestepTextProjEmbeddings(dim, c.pooled_projection_dim, dtype=dtype)
        self.context_embedder = Linear(c.joint_attention_dim, c.caption_projection_dim, dtype=dtype)
        self.transformer_blocks = nn.CellList([
            JointTransformerBlock(dim, c.num_attention_heads, c.attention_head_dim,
                                  context_pre_only=i == c.num_layers - 1, qk_norm=c.qk_norm,
                                  use_dual_attention=i in c.dual_attention_indices, dtype=dtype)
            for i in range(c.num_layers)])
        self.norm_out = AdaLayerNormContinuous(dim, dim, dtype=dtype)
        self.proj_out = Linear(dim, c.patch_size * c.patch_size * c.output_channels, dtype=dtype)

    def _check(self, shape: tuple, context, pooled) -> None:
        c = self.config
        if len(shape) != 4 or shape[1] != c.in_channels:
            raise ValueError(f"{NET}: expected latents [b, {c.in_channels}, h, w], got {shape}")
        if shape[2] % c.patch_size or shape[3] % c.patch_size:
            raise ValueError(f"{NET}: height and width must be multiples of patch_size {c.patch_size}, "
                             f"got {shape[2]}x{shape[3]}")
        if max(shape[2], shape[3]) // c.patch_size > c.pos_embed_max_size:
            raise ValueError(f"{NET}: a {shape[2]}x{shape[3]} latent is {shape[2] // c.patch_size}x"
                             f"{shape[3] // c.patch_size} patches, more than pos_embed_max_size {c.pos_embed_max_size}")
        if context is None or context.ndim != 3 or context.shape[0] != shape[0] \
                or context.shape[2] != c.joint_attention_dim:
            raise ValueError(f"{NET}: expected encoder_hidden_states [{shape[0]}, m, {c.joint_attention_dim}], got "
                             f"{None if context is None else context.shape}")
        if pooled is None or pooled.shape != (shape[0], c.pooled_projection_dim):
            raise ValueError(f"{NET}: expected pooled_projections [{shape[0]}, {c.pooled_projection_dim}], got "
                             f"{None if pooled is None else pooled.shape}")

    def construct(self, sample: Float[Tensor, "b c h w"], timestep,
                  encoder_hidden_states: Float[Tensor, "b m e"] = None,
                  pooled_projections: Float[Tensor, "b p"] = None) -> Float[Tensor, "b o h w"]:
        self._check(sample.shape, encoder_hidden_states, pooled_projections)
        dtype = self.compute_dtype
        sample = sample.astype(dtype)
        b, _, h, w = sample.shape
        x = self.pos_embed(sample)
        temb = self.time_text_embed(batch_timesteps(timestep, b), pooled_projections.astype(dtype))
        context = self.context_embedder(encoder_hidden_states.astype(dtype))
        for block in self.transformer_blocks:
            x, context = block(x, context, temb)
        x = self.proj_out(self.norm_out(x, temb))
        p = self.config.patch_size
        return unpatchify(x, h // p, w // p, p, self.config.output_channels)
