"""UnCLIPTextProjModel (Ramesh et al. 2022, section 2.1): the unCLIP decoder's conditioning from CLIP embeddings,
additive time embeddings from the image and text embeddings, and four extra context tokens from the image embedding
prepended to the projected, normalised text tokens (diffusers' pipelines/unclip/text_proj.py).

The parameter tree has diffusers' names, so `map_weights` is the identity.
"""
from dataclasses import dataclass

import mindspore as ms
from jaxtyping import Float
from mindspore import Parameter, Tensor, nn
from mindspore import ops as mops
from mindspore.common.initializer import initializer

from ..blocks.layers import LayerNorm, Linear
from ._config import read_config


@dataclass(frozen=True)
class UnCLIPTextProjConfig:
    """diffusers' UnCLIPTextProjModel config fields (defaults: karlo-v1-alpha's text_proj)."""

    clip_extra_context_tokens: int = 4
    clip_embeddings_dim: int = 768
    time_embed_dim: int = 1536
    cross_attention_dim: int = 1536


def config_from_diffusers(d: dict) -> UnCLIPTextProjConfig:
    """UnCLIPTextProjConfig from a diffusers config.json dict; ValueError names unknown keys."""
    return read_config(UnCLIPTextProjConfig, d, "UnCLIPTextProjModel")


def map_weights(key: str) -> str:
    """diffusers state-dict key -> msdiff parameter name (identity: the trees match)."""
    return key


class UnCLIPTextProjModel(nn.Cell):
    """text_proj(image_embeddings, prompt_embeds, text_encoder_hidden_states, do_classifier_free_guidance) ->
    (decoder context [b, k + n, cross], additive time embeddings [b, time_embed_dim]); with guidance the learned
    unconditional image embedding is prepended to image_embeddings (the other inputs already hold both halves)."""

    def __init__(self, config: UnCLIPTextProjConfig, dtype=ms.float32):
        super().__init__()
        c = self.config = config
        self.compute_dtype = dtype
        d = c.clip_embeddings_dim
        self.learned_classifier_free_guidance_embeddings = Parameter(
            initializer("zeros", (d,), dtype), name="learned_classifier_free_guidance_embeddings")
        self.embedding_proj = Linear(d, c.time_embed_dim, dtype=dtype)
        self.clip_image_embeddings_project_to_time_embeddings = Linear(d, c.time_embed_dim, dtype=dtype)
        self.clip_extra_context_tokens_proj = Linear(d, c.clip_extra_context_tokens * c.cross_attention_dim,
                                                     dtype=dtype)
        self.encoder_hidden_states_proj = Linear(d, c.cross_attention_dim, dtype=dtype)
        self.text_encoder_hidden_states_norm = LayerNorm(c.cross_attention_dim, dtype=dtype)

    def construct(self, image_embeddings: Float[Tensor, "b d"], prompt_embeds: Float[Tensor, "B d"],
                  text_encoder_hidden_states: Float[Tensor, "B n d"], do_classifier_free_guidance: bool = False):
        dt = self.compute_dtype
        image = image_embeddings.astype(dt)
        if do_classifier_free_guidance:
            uncond = self.learned_classifier_free_guidance_embeddings.astype(dt).reshape(1, -1)
            image = mops.cat((uncond.broadcast_to(image.shape), image), axis=0)
        b = prompt_embeds.shape[0]
        if image.shape[0] != b:
            raise ValueError(f"UnCLIPTextProjModel: {image.shape[0]} image embeddings for {b} prompt embeddings")
        time = self.embedding_proj(prompt_embeds.astype(dt)) \
            + self.clip_image_embeddings_project_to_time_embeddings(image)
        k = self.config.clip_extra_context_tokens
        extra = self.clip_extra_context_tokens_proj(image).reshape(b, -1, k).swapaxes(1, 2)
        text = self.encoder_hidden_states_proj(text_encoder_hidden_states.astype(dt))
        text = self.text_encoder_hidden_states_norm(text)
        return mops.cat((extra, text), axis=1), time
