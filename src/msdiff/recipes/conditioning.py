"""Shared recipe plumbing: model family detection, defaults, and the UNet conditioning of SD / SD-XL / LCM."""
from typing import Optional

from mindspore import ops as mops

from .denoise import Denoiser, cfg_batch
from .steps import (FiniteTracker, PromptEmbeds, add_time_ids, check_size, encode_prompt, encode_prompt_xl,
                    guidance_scale_embedding, vae_scale_factor)


def is_xl(components) -> bool:
    """SD-XL family: a second text encoder or a UNet with text_time added embeddings."""
    return components.text_encoder_2 is not None or \
        getattr(components.unet.config, "addition_embed_type", None) == "text_time"


def is_lcm(components) -> bool:
    """A latent consistency model folder (diffusers' LatentConsistencyModel*Pipeline)."""
    return (components.pipeline_class or "").startswith("LatentConsistencyModel")


def default_guidance(components) -> float:
    """diffusers' default guidance_scale: 8.5 for LCM, 5.0 for SD-XL, 7.5 for SD."""
    return 8.5 if is_lcm(components) else 5.0 if is_xl(components) else 7.5


def default_hw(components, height: Optional[int], width: Optional[int]) -> tuple:
    """height/width defaulting to the UNet's sample_size times the VAE scale factor; checked divisible."""
    f = vae_scale_factor(components)
    size = components.unet.config.sample_size or 64
    size = size if isinstance(size, (tuple, list)) else (size, size)
    height, width = height or size[0] * f, width or size[1] * f
    check_size(components, height, width)
    return height, width


def uses_cfg(components, guidance_scale: float) -> bool:
    """Classifier-free guidance is on for guidance_scale > 1 unless the UNet embeds the scale itself (LCM)."""
    return (guidance_scale > 1.0 and components.unet.config.time_cond_proj_dim is None
            and not is_lcm(components))


def text_conditioning(components, prompt, negative_prompt, *, guidance: bool, num_images_per_prompt: int,
                      clip_skip: Optional[int], prompt_embeds=None, negative_prompt_embeds=None,
                      pooled_prompt_embeds=None, negative_pooled_prompt_embeds=None, prompt_2=None,
                      negative_prompt_2=None, tracker: Optional[FiniteTracker] = None) -> PromptEmbeds:
    """encode_prompt for SD or encode_prompt_xl for SD-XL, recorded in the tracker."""
    if prompt is None and prompt_embeds is None:
        raise ValueError("pass prompt or prompt_embeds")
    if is_xl(components):
        emb = encode_prompt_xl(components, prompt, negative_prompt, prompt_2=prompt_2,
                               negative_prompt_2=negative_prompt_2, num_images_per_prompt=num_images_per_prompt,
                               guidance=guidance, clip_skip=clip_skip, prompt_embeds=prompt_embeds,
                               negative_prompt_embeds=negative_prompt_embeds,
                               pooled_prompt_embeds=pooled_prompt_embeds,
                               negative_pooled_prompt_embeds=negative_pooled_prompt_embeds)
    else:
        emb = encode_prompt(components, prompt, negative_prompt, num_images_per_prompt=num_images_per_prompt,
                            guidance=guidance, clip_skip=clip_skip, prompt_embeds=prompt_embeds,
                            negative_prompt_embeds=negative_prompt_embeds)
    if tracker is not None:
        tracker.add("prompt encoding (text encoder)", emb.prompt_embeds)
    return emb


def make_denoiser(components, emb: PromptEmbeds, *, guidance_scale: float, guidance_rescale: float = 0.0,
                  height: int, width: int, original_size=None, crops_coords_top_left=(0, 0), target_size=None,
                  negative_original_size=None, negative_crops_coords_top_left=None, negative_target_size=None,
                  aesthetic_score: float = 6.0, negative_aesthetic_score: float = 2.5,
                  use_aesthetics: bool = False, extra=None, kind: Optional[str] = None) -> Denoiser:
    """The Denoiser for SD / SD-XL / LCM: CFG batch layout, SD-XL pooled embeds and time ids, LCM timestep_cond."""
    guidance = emb.negative_prompt_embeds is not None
    kind = kind or ("cfg" if guidance else "none")
    batch = emb.prompt_embeds.shape[0]
    copies = {"none": 1, "cfg": 2, "pix2pix": 3}[kind]
    if kind == "pix2pix" and guidance:
        neg = emb.negative_prompt_embeds
        context = mops.concat([emb.prompt_embeds, neg, neg], axis=0)
    else:
        context = cfg_batch(emb.negative_prompt_embeds, emb.prompt_embeds)
    text_embeds = time_ids = timestep_cond = None
    if is_xl(components):
        original_size = tuple(original_size or (height, width))
        target_size = tuple(target_size or (height, width))
        if use_aesthetics:
            pos = add_time_ids(original_size, crops_coords_top_left, None, aesthetic_score, batch)
            neg = add_time_ids(negative_original_size or original_size,
                               negative_crops_coords_top_left or crops_coords_top_left, None,
                               negative_aesthetic_score, batch)
        else:
            pos = add_time_ids(original_size, crops_coords_top_left, target_size, None, batch)
            if negative_original_size is not None and negative_target_size is not None:
                neg = add_time_ids(negative_original_size, negative_crops_coords_top_left or (0, 0),
                                   negative_target_size, None, batch)
            else:
                neg = pos
        expected = components.unet.config.projection_class_embeddings_input_dim
        got = emb.pooled_prompt_embeds.shape[-1] + pos.shape[-1] * components.unet.config.addition_time_embed_dim
        if expected is not None and got != expected:
            raise ValueError(f"the UNet expects {expected} added-embedding features, got {got}: "
                             f"requires_aesthetics_score={use_aesthetics} does not match this checkpoint")
        text_embeds = cfg_batch(emb.negative_pooled_prompt_embeds if guidance else None, emb.pooled_prompt_embeds)
        time_ids = cfg_batch(neg if guidance else None, pos)
    dim = components.unet.config.time_cond_proj_dim
    if dim is not None:
        timestep_cond = guidance_scale_embedding(guidance_scale - 1.0, dim, batch * copies)
    return Denoiser(components.unet, context, kind, float(guidance_scale), float(guidance_rescale),
                    1.0, text_embeds, time_ids, timestep_cond, extra)


def tile_batch(x, batch: int):
    """Tile image latents (b, ...) to `batch` rows as diffusers' img2img does (whole-batch copies)."""
    b = x.shape[0]
    if batch == b:
        return x
    if batch % b:
        raise ValueError(f"cannot use {b} images for {batch} generated images")
    return mops.concat([x] * (batch // b), axis=0)
