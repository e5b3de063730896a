"""Prompt encoding: CLIP text conditioning of SD 1.x / 2.x and SD-XL, SD-XL's time ids, LCM's guidance embedding."""
from typing import NamedTuple, Optional

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..tokenizer import warn_truncated


class PromptEmbeds(NamedTuple):
    """Text conditioning: embeds[b, n, d], negative (or None without guidance), pooled ones for SD-XL, and an
    IP-Adapter's image tokens (recipes.ip_adapter)."""

    prompt_embeds: Tensor
    negative_prompt_embeds: Optional[Tensor] = None
    pooled_prompt_embeds: Optional[Tensor] = None
    negative_pooled_prompt_embeds: Optional[Tensor] = None
    image_tokens: Optional[tuple] = None  # IP-Adapter (negative or None, positive) tokens [b, T, d]


def _texts(prompt, batch: Optional[int] = None) -> list:
    if isinstance(prompt, bytes):
        raise ValueError("prompt must be text (str), got bytes: decode it first (e.g. prompt.decode('utf-8'))")
    texts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"prompt must be a string or a non-empty list of strings, got {prompt!r}")
    if batch is not None and len(texts) == 1 and batch > 1:
        texts = texts * batch
    if batch is not None and len(texts) != batch:
        raise ValueError(f"negative_prompt has {len(texts)} entries but prompt has {batch}")
    return texts


def _tokens(tokenizer, texts: list, max_length: Optional[int] = None) -> Tensor:
    max_length = max_length or tokenizer.model_max_length
    toks = tokenizer(texts, padding="max_length", max_length=max_length, truncation=True)
    warn_truncated(toks, max_length)
    return Tensor(toks.input_ids)


def _repeat(x: Optional[Tensor], n: int) -> Optional[Tensor]:
    """Each row repeated n times in a row (diffusers' repeat(1, n, 1).view(b * n, ...))."""
    if x is None or n == 1:
        return x
    return mops.repeat_interleave(x, n, 0)


def check_clip_skip(clip_skip: Optional[int], layers: int, extra: int = 0) -> None:
    """ValueError unless clip_skip is None or an integer in [0, layers - 1 - extra] (the text encoder's depth)."""
    if clip_skip is None:
        return
    top = layers - 1 - extra
    if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or not 0 <= clip_skip <= top:
        raise ValueError(f"clip_skip must be an integer in [0, {top}] for this {layers}-layer text encoder, got "
                         f"{clip_skip!r}")


def _encode_sd(encoder, ids: Tensor, clip_skip: Optional[int]) -> Tensor:
    check_clip_skip(clip_skip, encoder.config.num_hidden_layers)
    last, _, states = encoder(ids)
    if clip_skip is None:
        return last
    return encoder.final_layer_norm(states[-(clip_skip + 1)])


def encode_prompt(components, prompt=None, negative_prompt=None, *, num_images_per_prompt: int = 1,
                  guidance: bool = True, clip_skip: Optional[int] = None, prompt_embeds: Optional[Tensor] = None,
                  negative_prompt_embeds: Optional[Tensor] = None) -> PromptEmbeds:
    """SD 1.x/2.x text conditioning (diffusers' StableDiffusionPipeline.encode_prompt); clip_skip skips layers."""
    tok, enc = components.tokenizer, components.text_encoder
    if prompt_embeds is None:
        texts = _texts(prompt)
        prompt_embeds = _encode_sd(enc, _tokens(tok, texts), clip_skip)
    batch = prompt_embeds.shape[0]
    if guidance and negative_prompt_embeds is None:
        neg = _texts("" if negative_prompt is None else negative_prompt, batch)
        negative_prompt_embeds = enc(_tokens(tok, neg, prompt_embeds.shape[1]))[0]
    n = num_images_per_prompt
    return PromptEmbeds(_repeat(prompt_embeds.astype(ms.float32), n),
                        _repeat(None if not guidance else negative_prompt_embeds.astype(ms.float32), n))


def _xl_pairs(components):
    pairs = [(components.tokenizer, components.text_encoder), (components.tokenizer_2, components.text_encoder_2)]
    return [(t, e) for t, e in pairs if e is not None]


def _encode_xl(pairs, texts_per_encoder, clip_skip, max_length=None):
    embeds, pooled = [], None
    for (tok, enc), texts in zip(pairs, texts_per_encoder):
        last, second, states = enc(_tokens(tok, texts, max_length))
        if type(enc).__name__ == "CLIPTextModelWithProjection":
            pooled = second
        embeds.append(states[-2] if clip_skip is None else states[-(clip_skip + 2)])
    return mops.concat(embeds, axis=-1), pooled


def encode_prompt_xl(components, prompt=None, negative_prompt=None, *, prompt_2=None, negative_prompt_2=None,
                     num_images_per_prompt: int = 1, guidance: bool = True, clip_skip: Optional[int] = None,
                     prompt_embeds: Optional[Tensor] = None, negative_prompt_embeds: Optional[Tensor] = None,
                     pooled_prompt_embeds: Optional[Tensor] = None,
                     negative_pooled_prompt_embeds: Optional[Tensor] = None,
                     force_zeros_for_empty_prompt: Optional[bool] = None) -> PromptEmbeds:
    """SD-XL conditioning from both text encoders (diffusers' StableDiffusionXLPipeline.encode_prompt)."""
    pairs = _xl_pairs(components)
    if force_zeros_for_empty_prompt is None:
        force_zeros_for_empty_prompt = components.options.get("force_zeros_for_empty_prompt", True)
    if prompt_embeds is None:
        texts = _texts(prompt)
        texts_2 = _texts(prompt_2) if prompt_2 is not None else texts
        per = [texts, texts_2] if len(pairs) == 2 else [texts_2]
        prompt_embeds, pooled_prompt_embeds = _encode_xl(pairs, per, clip_skip)
    batch = prompt_embeds.shape[0]
    if guidance and negative_prompt_embeds is None:
        if negative_prompt is None and force_zeros_for_empty_prompt:
            negative_prompt_embeds = mops.zeros_like(prompt_embeds)
            negative_pooled_prompt_embeds = mops.zeros_like(pooled_prompt_embeds)
        else:
            neg = _texts(negative_prompt or "", batch)
            neg_2 = _texts(negative_prompt_2, batch) if negative_prompt_2 is not None else neg
            per = [neg, neg_2] if len(pairs) == 2 else [neg_2]
            negative_prompt_embeds, negative_pooled_prompt_embeds = _encode_xl(pairs, per, None,
                                                                               prompt_embeds.shape[1])
    n = num_images_per_prompt
    f32 = [None if t is None else t.astype(ms.float32) for t in
           (prompt_embeds, negative_prompt_embeds if guidance else None, pooled_prompt_embeds,
            negative_pooled_prompt_embeds if guidance else None)]
    return PromptEmbeds(*(_repeat(t, n) for t in f32))


def add_time_ids(original_size, crops_coords_top_left, target_size, aesthetic_score: Optional[float] = None,
                 batch: int = 1) -> Float[Tensor, "b k"]:
    """SD-XL micro-conditioning row (original h, w, crop top, left, target h, w | aesthetic score) per image."""
    tail = tuple(target_size) if aesthetic_score is None else (aesthetic_score,)
    row = np.asarray(tuple(original_size) + tuple(crops_coords_top_left) + tail, np.float32)
    return Tensor(np.tile(row[None], (batch, 1)))


def guidance_scale_embedding(w: float, dim: int, batch: int = 1) -> Float[Tensor, "b d"]:
    """Sinusoidal embedding of (w * 1000) for LCM's timestep_cond (VDM, Kingma et al. 2021, as diffusers)."""
    half = dim // 2
    freq = np.exp(np.arange(half, dtype=np.float32) * -(np.float32(np.log(10000.0)) / np.float32(half - 1)))
    arg = np.float32(w * 1000.0) * freq.astype(np.float32)
    emb = np.concatenate([np.sin(arg), np.cos(arg)]).astype(np.float32)
    if dim % 2 == 1:
        emb = np.concatenate([emb, np.zeros(1, np.float32)])
    return Tensor(np.tile(emb[None], (batch, 1)))
