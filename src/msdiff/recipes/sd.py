"""The Stable Diffusion family's shared parts: family detection and defaults, the prompt / SD-XL keywords every SD
recipe accepts (one value each: `TextArgs`, `MicroConditioning`), and the UNet inputs and guidance they make."""
from dataclasses import dataclass, fields
from typing import Optional, Tuple

import numpy as np
from mindspore import Tensor
from mindspore import ops as mops

from ..conditioning import CFG, NetInputs, NoGuidance, Pix2Pix, cfg_batch
from ..samplers import FiniteTracker
from .family import RENAMED
from .prompts import PromptEmbeds, add_time_ids, encode_prompt, encode_prompt_xl, guidance_scale_embedding
from .latents import check_size, vae_scale_factor


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


def guidance_of(components, guidance_scale: Optional[float]) -> float:
    """guidance_scale, or diffusers' default for the family; ValueError unless a finite number."""
    g = default_guidance(components) if guidance_scale is None else guidance_scale
    if isinstance(g, bool) or not isinstance(g, (int, float)) or not np.isfinite(g):
        raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale!r}")
    return float(g)


def default_steps(components, steps: Optional[int]) -> int:
    """num_inference_steps, defaulting to diffusers' 4 for LCM and 50 otherwise."""
    return steps or (4 if is_lcm(components) else 50)


def default_hw(components, height: Optional[int], width: Optional[int]) -> tuple:
    """height/width defaulting to the UNet's sample_size times the VAE scale factor; checked divisible."""
    f = vae_scale_factor(components)
    size = components.unet.config.sample_size or 64
    size = size if isinstance(size, (tuple, list)) else (size, size)
    height, width = height or size[0] * f, width or size[1] * f
    check_size(components, height, width)
    return height, width


def uses_aesthetics(components) -> bool:
    """SD-XL img2img / inpainting checkpoints conditioned on an aesthetic score (the refiner)."""
    return is_xl(components) and bool(components.options.get("requires_aesthetics_score", False))


def uses_cfg(components, guidance_scale: float) -> bool:
    """Classifier-free guidance is on for guidance_scale > 1 unless the UNet embeds the scale itself (LCM)."""
    return (guidance_scale > 1.0 and components.unet.config.time_cond_proj_dim is None
            and not is_lcm(components))


@dataclass(frozen=True)
class TextArgs:
    """Prompt overrides every SD recipe accepts (diffusers' names): precomputed embeddings, SD-XL's second prompts,
    clip_skip, and the image of a loaded IP-Adapter."""

    clip_skip: Optional[int] = None
    prompt_embeds: Optional[Tensor] = None
    negative_prompt_embeds: Optional[Tensor] = None
    pooled_prompt_embeds: Optional[Tensor] = None
    negative_pooled_prompt_embeds: Optional[Tensor] = None
    prompt_2: object = None
    negative_prompt_2: object = None
    ip_adapter_image: object = None


@dataclass(frozen=True)
class MicroConditioning:
    """SD-XL's size / crop / aesthetic micro-conditioning (Podell et al. 2023, sec. 2.2), diffusers' names; sizes
    default to the generated height x width."""

    original_size: Optional[tuple] = None
    crops_coords_top_left: tuple = (0, 0)
    target_size: Optional[tuple] = None
    negative_original_size: Optional[tuple] = None
    negative_crops_coords_top_left: Optional[tuple] = None
    negative_target_size: Optional[tuple] = None
    aesthetic_score: float = 6.0
    negative_aesthetic_score: float = 2.5

    def time_ids(self, height: int, width: int, batch: int, aesthetics: bool) -> Tuple[Tensor, Tensor]:
        """(positive, negative) add_time_ids rows for `batch` images (diffusers' _get_add_time_ids)."""
        original = tuple(self.original_size or (height, width))
        target = tuple(self.target_size or (height, width))
        crops = tuple(self.crops_coords_top_left)
        if aesthetics:
            pos = add_time_ids(original, crops, None, self.aesthetic_score, batch)
            neg = add_time_ids(self.negative_original_size or original, self.negative_crops_coords_top_left or crops,
                               None, self.negative_aesthetic_score, batch)
            return pos, neg
        pos = add_time_ids(original, crops, target, None, batch)
        if self.negative_original_size is not None and self.negative_target_size is not None:
            return pos, add_time_ids(self.negative_original_size, self.negative_crops_coords_top_left or (0, 0),
                                     self.negative_target_size, None, batch)
        return pos, pos


_TEXT = {f.name for f in fields(TextArgs)}
_MICRO = {f.name for f in fields(MicroConditioning)}


def split_conditioning(recipe: str, kwargs: dict) -> Tuple[TextArgs, MicroConditioning]:
    """The prompt overrides and SD-XL micro-conditioning among a recipe's extra keywords; any other keyword is a
    TypeError naming msdiff's equivalent or the accepted names."""
    for key in kwargs:
        if key in RENAMED:
            raise TypeError(f"{recipe}() has no argument {key!r} (diffusers'): use {RENAMED[key]}")
        if key not in _TEXT and key not in _MICRO:
            raise TypeError(f"{recipe}() got an unexpected keyword argument {key!r}; its prompt / SD-XL keywords: "
                            f"{', '.join(sorted(_TEXT | _MICRO))}")
    return (TextArgs(**{k: v for k, v in kwargs.items() if k in _TEXT}),
            MicroConditioning(**{k: v for k, v in kwargs.items() if k in _MICRO}))


def text_conditioning(components, prompt, negative_prompt, text: TextArgs, *, guidance: bool,
                      num_images_per_prompt: int = 1, tracker: Optional[FiniteTracker] = None) -> PromptEmbeds:
    """encode_prompt for SD or encode_prompt_xl for SD-XL, recorded in the tracker."""
    if prompt is None and text.prompt_embeds is None:
        raise ValueError("pass prompt or prompt_embeds")
    if isinstance(num_images_per_prompt, bool) or not isinstance(num_images_per_prompt, int) or \
            num_images_per_prompt < 1:
        raise ValueError(f"num_images_per_prompt must be a positive integer, got {num_images_per_prompt!r}")
    if isinstance(prompt, (list, tuple)) and not prompt:
        raise ValueError("prompt is an empty list: give at least one prompt")
    common = dict(num_images_per_prompt=num_images_per_prompt, guidance=guidance, clip_skip=text.clip_skip,
                  prompt_embeds=text.prompt_embeds, negative_prompt_embeds=text.negative_prompt_embeds)
    if is_xl(components):
        emb = encode_prompt_xl(components, prompt, negative_prompt, prompt_2=text.prompt_2,
                               negative_prompt_2=text.negative_prompt_2,
                               pooled_prompt_embeds=text.pooled_prompt_embeds,
                               negative_pooled_prompt_embeds=text.negative_pooled_prompt_embeds, **common)
    else:
        emb = encode_prompt(components, prompt, negative_prompt, **common)
    if text.ip_adapter_image is not None:
        from .ip_adapter import image_tokens
        emb = emb._replace(image_tokens=image_tokens(components, text.ip_adapter_image,
                                                     batch=emb.prompt_embeds.shape[0], guidance=guidance))
    if tracker is not None:
        tracker.add("prompt encoding (text encoder)", emb.prompt_embeds)
    return emb


def sd_guidance(emb: PromptEmbeds, guidance_scale: float, guidance_rescale: float = 0.0):
    """CFG when the embeddings carry a negative half, else none."""
    return NoGuidance() if emb.negative_prompt_embeds is None else CFG(guidance_scale, guidance_rescale)


def sd_inputs(components, emb: PromptEmbeds, micro: MicroConditioning, *, guidance_scale: float, height: int,
              width: int, guidance=None, aesthetics: bool = False) -> NetInputs:
    """The UNet's keyword inputs for SD / SD-XL / LCM batched as `guidance` expands the sample: text context, SD-XL
    pooled embeds and time ids, LCM's guidance-scale embedding (timestep_cond)."""
    guidance = NoGuidance() if guidance is None else guidance
    guided = emb.negative_prompt_embeds is not None
    batch = emb.prompt_embeds.shape[0]
    if isinstance(guidance, Pix2Pix):
        neg = emb.negative_prompt_embeds
        context = mops.concat([emb.prompt_embeds, neg, neg], axis=0)
    else:
        context = cfg_batch(emb.negative_prompt_embeds, emb.prompt_embeds)
    text_embeds = time_ids = timestep_cond = None
    if is_xl(components):
        pos, neg = micro.time_ids(height, width, batch, aesthetics)
        expected = components.unet.config.projection_class_embeddings_input_dim
        got = emb.pooled_prompt_embeds.shape[-1] + pos.shape[-1] * components.unet.config.addition_time_embed_dim
        if expected is not None and got != expected:
            raise ValueError(f"the UNet expects {expected} added-embedding features, got {got}: "
                             f"requires_aesthetics_score={aesthetics} does not match this checkpoint")
        if isinstance(guidance, Pix2Pix):
            text_embeds = mops.concat([emb.pooled_prompt_embeds] + [emb.negative_pooled_prompt_embeds] * 2, axis=0)
            time_ids = mops.concat([pos] * 3, axis=0)
        else:
            text_embeds = cfg_batch(emb.negative_pooled_prompt_embeds if guided else None, emb.pooled_prompt_embeds)
            time_ids = cfg_batch(neg if guided else None, pos)
    dim = components.unet.config.time_cond_proj_dim
    if dim is not None:
        timestep_cond = guidance_scale_embedding(guidance_scale - 1.0, dim, batch * guidance.copies)
    return NetInputs(encoder_hidden_states=context, text_embeds=text_embeds, time_ids=time_ids,
                     timestep_cond=timestep_cond)


def tile_batch(x, batch: int):
    """Tile image latents (b, ...) to `batch` rows as diffusers' img2img does (whole-batch copies)."""
    b = x.shape[0]
    if batch == b:
        return x
    if batch % b:
        raise ValueError(f"cannot use {b} images for {batch} generated images")
    return mops.concat([x] * (batch // b), axis=0)
