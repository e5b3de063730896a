"""inpaint: repaint the masked part of an image (diffusers' StableDiffusion[XL]InpaintPipeline).

A 9-channel inpainting UNet sees [latents, mask, masked-image latents] at every call; a plain
4-channel UNet is kept on the image outside the mask by re-noising the image latents to the next
call's level after each step and pasting them in (diffusers' blending).
"""
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from mindspore import Tensor
from mindspore import ops as mops

from .. import ops
from ..samplers import add_noise
from .conditioning import default_guidance, is_xl, make_denoiser, text_conditioning, tile_batch, uses_cfg
from .denoise import denoise, make_schedule, resolve_sampler
from .steps import (FiniteTracker, NoiseSource, check_size, default_size, encode_image, finish, image_size,
                    prepare_latents, preprocess_image, preprocess_mask, vae_scale_factor)


def mask_latents(components, mask, masked_image, noise: NoiseSource, batch: int, vae_dtype="float32"):
    """(mask at latent size, masked-image latents), tiled to `batch` (diffusers' prepare_mask_latents)."""
    f = vae_scale_factor(components)
    small = ops.interpolate(mask, size=(mask.shape[2] // f, mask.shape[3] // f), mode="nearest")
    z = encode_image(components, masked_image, noise, vae_dtype, scale=False)
    z = z * np.float32(components.vae.config.scaling_factor)
    return tile_batch(small, batch), tile_batch(z, batch)


def inpaint(components, prompt=None, image=None, mask_image=None, negative_prompt=None, *, strength: float = 1.0,
            num_inference_steps: int = 50, guidance_scale: Optional[float] = None, guidance_rescale: float = 0.0,
            height: Optional[int] = None, width: Optional[int] = None, num_images_per_prompt: int = 1,
            latents=None, clip_skip: Optional[int] = None, prompt_embeds: Optional[Tensor] = None,
            negative_prompt_embeds: Optional[Tensor] = None, pooled_prompt_embeds: Optional[Tensor] = None,
            negative_pooled_prompt_embeds: Optional[Tensor] = None, prompt_2=None, negative_prompt_2=None,
            original_size=None, crops_coords_top_left=(0, 0), target_size=None,
            aesthetic_score: float = 6.0, negative_aesthetic_score: float = 2.5, output_type: str = "pil",
            seed: Optional[int] = None, sampler=None, noise=None, callback: Optional[Callable] = None,
            mode: str = "pynative", vae_dtype="float32"):
    """Repaint where mask_image is white (>= 0.5), SD or SD-XL, 9- or 4-channel UNet.

    image and mask_image must have the same size (ValueError otherwise); height/width default to
    it. `latents`, if given, is the starting noise and, as in diffusers, replaces the image-plus-noise
    start even when strength < 1. Other arguments as in text_to_image.
    """
    if image is None or mask_image is None:
        raise ValueError("inpaint needs image= and mask_image=")
    f = vae_scale_factor(components)
    hw = image_size(image)
    height, width = default_size(image, height, width, f)
    check_size(components, height, width)
    g = default_guidance(components) if guidance_scale is None else guidance_scale
    noise_src, tracker = NoiseSource(seed, noise), FiniteTracker()
    cfg = uses_cfg(components, g)
    emb = text_conditioning(components, prompt, negative_prompt, guidance=cfg,
                            num_images_per_prompt=num_images_per_prompt, clip_skip=clip_skip,
                            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds,
                            pooled_prompt_embeds=pooled_prompt_embeds,
                            negative_pooled_prompt_embeds=negative_pooled_prompt_embeds, prompt_2=prompt_2,
                            negative_prompt_2=negative_prompt_2, tracker=tracker)
    batch = emb.prompt_embeds.shape[0]
    smp = resolve_sampler(components, sampler)
    schedule = make_schedule(smp, num_inference_steps, strength)
    mask = preprocess_mask(mask_image, height, width, image_hw=hw)
    init_image = preprocess_image(image, height, width)
    channels = components.unet.config.in_channels
    if channels not in (4, 9):
        raise ValueError(f"inpaint needs a UNet with 4 or 9 input channels, this one has {channels}")

    # random draws in diffusers' order: image posterior sample, start noise, masked-image posterior sample
    full = strength >= 1.0
    image_lat = None
    if channels == 4 or (latents is None and not full):
        image_lat = tile_batch(encode_image(components, init_image, noise_src, vae_dtype, scale=False)
                               * np.float32(components.vae.config.scaling_factor), batch)
    eps = prepare_latents(components, batch, height, width, noise_src, latents)
    if latents is None and not full:
        x = add_noise(schedule, image_lat, eps, 0)
    else:
        x = eps * np.float32(schedule.init_noise_sigma)
    tracker.add("initial latents", x)
    masked = init_image * (mask < 0.5).astype(ms.float32)
    small_mask, masked_lat = mask_latents(components, mask, masked, noise_src, batch, vae_dtype)

    extra = after = None
    if channels == 9:
        copies = 2 if cfg else 1
        extra = mops.concat([mops.concat([small_mask] * copies, axis=0),
                             mops.concat([masked_lat] * copies, axis=0)], axis=1)
    else:
        def after(i, latents_i):
            proper = add_noise(schedule, image_lat, eps, i + 1) if i < len(schedule) - 1 else image_lat
            return (1 - small_mask) * proper + small_mask * latents_i

    den = make_denoiser(components, emb, guidance_scale=g, guidance_rescale=guidance_rescale, height=height,
                        width=width, original_size=original_size, crops_coords_top_left=crops_coords_top_left,
                        target_size=target_size, aesthetic_score=aesthetic_score,
                        negative_aesthetic_score=negative_aesthetic_score,
                        use_aesthetics=is_xl(components) and components.options.get("requires_aesthetics_score",
                                                                                     False), extra=extra)
    x = denoise(den, smp, schedule, x, noise_src, mode, callback, after_step=after, tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)
