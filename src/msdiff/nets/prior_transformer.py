"""PriorTransformer (Ramesh et al. 2022, "Hierarchical Text-Conditional Image Generation with CLIP Latents", the
unCLIP / Karlo and Kandinsky 2.x prior): a causal transformer over [text tokens; text embedding; timestep; noisy
image embedding; learned query] that predicts the CLIP image embedding.

The parameter tree has diffusers' names, so `map_weights` is the identity. As diffusers, the causal mask is applied
only when a text attention mask is given (the pipelines always give one).
"""
from dataclasses import dataclass
from typing import Optional

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Parameter, Tensor, nn
from mindspore import ops as mops
from mindspore.common.initializer import initializer

from .. import ops
from ..blocks.attention import BasicTransformerBlock
from ..blocks.embeddings import TimestepEmbedding, Timesteps, batch_timesteps
from ..blocks.layers import LayerNorm, Linear
from ._config import read_config


@dataclass(frozen=True)
class PriorTransformerConfig:
    """diffusers' PriorTransformer config fields (diffusers' defaults: the Karlo / Kandinsky 2.1 prior)."""

    num_attention_heads: int = 32
    attention_head_dim: int = 64
    num_layers: int = 20
    embedding_dim: int = 768
    num_embeddings: int = 77
    additional_embeddings: int = 4
    norm_in_type: Optional[str] = None
    embedding_proj_norm_type: Optional[str] = None
    encoder_hid_proj_type: Optional[str] = "linear"
    added_emb_type: Optional[str] = "prd"
    time_embed_dim: Optional[int] = None
    embedding_proj_dim: Optional[int] = None
    clip_embed_dim: Optional[int] = None


_FIXED = {"time_embed_act_fn": ("silu",), "norm_in_type": (None, "layer"), "embedding_proj_norm_type": (None, "layer"),
          "encoder_hid_proj_type": (None, "linear"), "added_emb_type": (None, "prd")}
_IGNORED = {"dropout"}


def config_from_diffusers(d: dict) -> PriorTransformerConfig:
    """PriorTransformerConfig from a diffusers config.json dict; ValueError names unsupported keys/values."""
    return read_config(PriorTransformerConfig, d, "PriorTransformer", _FIXED, _IGNORED)


def map_weights(key: str) -> str:
    """diffusers state-dict key -> msdiff parameter name (identity: the trees match)."""
    return key


def _zeros(shape: tuple, dtype, name: str) -> Parameter:
    return Parameter(initializer("zeros", shape, dtype), name=name)


class MaskedSelfAttentionBlock(BasicTransformerBlock):
    """BasicTransformerBlock without cross-attention whose self-attention takes an additive mask."""

    def construct(self, x: Float[Tensor, "b n c"], mask: Float[Tensor, "b 1 n n"] = None) -> Float[Tensor, "b n c"]:
        x = self.attn1(self.norm1(x), None, mask) + x
        return self.ff(self.norm3(x)) + x


class PriorTransformer(nn.Cell):
    """prior(hidden_states, timestep, proj_embedding, encoder_hidden_states=None, attention_mask=None) ->
    predicted CLIP image embedding [b, clip_embed_dim]; `post_process_latents` un-normalises with clip_mean/std."""

    def __init__(self, config: PriorTransformerConfig, dtype=ms.float32):
        super().__init__()
        c = self.config = config
        self.compute_dtype = dtype
        inner = c.num_attention_heads * c.attention_head_dim
        proj_dim = c.embedding_proj_dim or c.embedding_dim
        clip_dim = c.clip_embed_dim or c.embedding_dim
        self.time_proj = Timesteps(inner, True, 0)
        self.time_embedding = TimestepEmbedding(inner, c.time_embed_dim or inner, out_dim=inner, dtype=dtype)
        self.proj_in = Linear(c.embedding_dim, inner, dtype=dtype)
        self.embedding_proj_norm = LayerNorm(proj_dim, dtype=dtype) if c.embedding_proj_norm_type else None
        self.embedding_proj = Linear(proj_dim, inner, dtype=dtype)
        self.encoder_hidden_states_proj = None
        if c.encoder_hid_proj_type == "linear":
            self.encoder_hidden_states_proj = Linear(c.embedding_dim, inner, dtype=dtype)
        n = c.num_embeddings + c.additional_embeddings
        self.positional_embedding = _zeros((1, n, inner), dtype, "positional_embedding")
        self.prd_embedding = _zeros((1, 1, inner), dtype, "prd_embedding") if c.added_emb_type == "prd" else None
        self.transformer_blocks = nn.CellList([
            MaskedSelfAttentionBlock(inner, c.num_attention_heads, c.attention_head_dim, activation_fn="gelu",
                                     attention_bias=True, dtype=dtype)
            for _ in range(c.num_layers)])
        self.norm_in = LayerNorm(inner, dtype=dtype) if c.norm_in_type else None
        self.norm_out = LayerNorm(inner, dtype=dtype)
        self.proj_to_clip_embeddings = Linear(inner, clip_dim, dtype=dtype)
        self.causal_mask = Tensor(np.triu(np.full((n, n), -10000.0, np.float32), 1)[None, None])
        self.clip_mean = _zeros((1, clip_dim), dtype, "clip_mean")
        self.clip_std = _zeros((1, clip_dim), dtype, "clip_std")

    def construct(self, hidden_states: Float[Tensor, "b e"], timestep, proj_embedding: Float[Tensor, "b p"],
                  encoder_hidden_states: Float[Tensor, "b m e"] = None,
                  attention_mask: Tensor = None) -> Float[Tensor, "b d"]:
        """attention_mask [b, m] (1 keep, 0 drop) masks the text tokens and turns on the causal mask."""
        dt = self.compute_dtype
        b = hidden_states.shape[0]
        time = self.time_embedding(self.time_proj(batch_timesteps(timestep, b)).astype(dt))
        proj_embedding = proj_embedding.astype(dt)
        if self.embedding_proj_norm is not None:
            proj_embedding = self.embedding_proj_norm(proj_embedding)
        proj = self.embedding_proj(proj_embedding)
        if self.encoder_hidden_states_proj is not None:
            if encoder_hidden_states is None:
                raise ValueError("PriorTransformer: encoder_hid_proj_type 'linear' needs encoder_hidden_states")
            encoder_hidden_states = self.encoder_hidden_states_proj(encoder_hidden_states.astype(dt))
        x = self.proj_in(hidden_states.astype(dt))
        if proj.ndim == 2:
            proj = proj[:, None, :]
        if x.ndim == 2:
            x = x[:, None, :]

        # token sequence [text; text embedding; timestep; image embedding; (prd query)] + positions
        parts = () if encoder_hidden_states is None else (encoder_hidden_states.astype(dt),)
        parts = parts + (proj, time[:, None, :], x)
        prefix = proj.shape[1] + 1 + (0 if encoder_hidden_states is None else encoder_hidden_states.shape[1])
        if self.prd_embedding is not None:
            parts = parts + (self.prd_embedding.astype(dt).broadcast_to((b, 1, x.shape[-1])),)
        x = mops.cat(parts, axis=1)
        pos = self.positional_embedding.astype(dt)
        if pos.shape[1] < x.shape[1]:
            pos = ops.pad(pos, (0, 0, prefix, 0 if self.prd_embedding is None else 1))
        x = x + pos

        mask = None
        if attention_mask is not None:
            mask = (1 - attention_mask.astype(ms.float32)) * -10000.0
            mask = ops.pad(mask, (0, self.config.additional_embeddings))[:, None, None, :] + self.causal_mask
            mask = mask.astype(dt)
        if self.norm_in is not None:
            x = self.norm_in(x)
        for block in self.transformer_blocks:
            x = block(x, mask)
        x = self.norm_out(x)
        x = x[:, -1] if self.prd_embedding is not None else x[:, prefix:]
        return self.proj_to_clip_embeddings(x)

    def post_process_latents(self, latents: Float[Tensor, "b d"]) -> Float[Tensor, "b d"]:
        """latents * clip_std + clip_mean (the prior's normalised embedding -> CLIP image embedding)."""
        return latents * self.clip_std.astype(latents.dtype) + self.clip_mean.astype(latents.dtype)
