"""inpaint: repaint the masked part of an image (diffusers' StableDiffusion[XL]InpaintPipeline).

A 9-channel inpainting UNet sees [latents, mask, masked-image latents] at every call (`ExtraChannels`); a plain
4-channel UNet is kept on the image outside the mask by re-noising the image latents to the next call's level
after each step and pasting them in (`Blend`, inside the compiled step). `inpaint_start` is the shared start of
every inpainting recipe (also ControlNet inpainting).
"""
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from mindspore import ops as mops

from .. import ops
from ..conditioning import Blend, ExtraChannels, make_schedule
from ..samplers import FiniteTracker, add_noise, noise_source, resolve_sampler
from .family import Family, diffusers_names
from .images import default_size, image_size, preprocess_image, preprocess_mask
from .latents import check_size, encode_image, finish, prepare_latents, vae_scale_factor
from .sd import guidance_of, split_conditioning, text_conditioning, tile_batch, uses_aesthetics, uses_cfg
from .sd_run import sd_denoise


def mask_latents(components, mask, masked_image, noise, batch: int, vae_dtype="float32"):
    """(mask at latent size, masked-image latents), tiled to `batch` (diffusers' prepare_mask_latents)."""
    f = vae_scale_factor(components)
    small = ops.interpolate(mask, size=(mask.shape[2] // f, mask.shape[3] // f), mode="nearest")
    z = encode_image(components, masked_image, noise, vae_dtype, scale=False)
    z = z * np.float32(components.vae.config.scaling_factor)
    return tile_batch(small, batch), tile_batch(z, batch)


def inpaint_size(components, image, mask_image, height: Optional[int], width: Optional[int]) -> tuple:
    """(height, width) of an inpainting run: the image's size rounded to the VAE factor unless given."""
    if image is None or mask_image is None:
        raise ValueError("inpainting needs image= and mask_image=")
    height, width = default_size(image, height, width, vae_scale_factor(components))
    check_size(components, height, width)
    return height, width


def inpaint_start(components, image, mask_image, batch: int, schedule, noise, *, height: int, width: int,
                  strength: float, latents=None, vae_dtype="float32") -> tuple:
    """(starting latents, pieces) of inpainting: ExtraChannels for a 9-channel UNet or Blend for a 4-channel one.

    Random draws in diffusers' order: image posterior sample (when needed), start noise, masked-image posterior
    sample. `latents`, if given, is the start noise and, as in diffusers, replaces the image-plus-noise start.
    """
    channels = components.unet.config.in_channels
    if channels not in (4, 9):
        raise ValueError(f"inpainting needs a UNet with 4 or 9 input channels, this one has {channels}")
    mask = preprocess_mask(mask_image, height, width, image_hw=image_size(image))
    init_image = preprocess_image(image, height, width)
    full = strength >= 1.0
    image_lat = None
    if channels == 4 or (latents is None and not full):
        image_lat = tile_batch(encode_image(components, init_image, noise, vae_dtype, scale=False)
                               * np.float32(components.vae.config.scaling_factor), batch)
    eps = prepare_latents(components, batch, height, width, noise, latents)
    if latents is None and not full:
        x = add_noise(schedule, image_lat, eps, 0)
    else:
        x = eps * np.float32(schedule.init_noise_sigma)
    masked = init_image * (mask < 0.5).astype(ms.float32)
    small_mask, masked_lat = mask_latents(components, mask, masked, noise, batch, vae_dtype)
    if channels == 9:
        return x, [ExtraChannels(mops.concat([small_mask, masked_lat], axis=1))]
    return x, [Blend(image_lat, eps, small_mask, schedule)]


@diffusers_names
def inpaint(components, prompt=None, image=None, mask_image=None, negative_prompt=None, *, strength: float = 1.0,
            num_inference_steps: int = 50, guidance_scale: Optional[float] = None, guidance_rescale: float = 0.0,
            height: Optional[int] = None, width: Optional[int] = None, num_images_per_prompt: int = 1,
            latents=None, output_type: str = "pil", seed: Optional[int] = None, sampler=None, noise=None,
            callback: Optional[Callable] = None, mode: Optional[str] = None, vae_dtype="float32", **conditioning):
    """Repaint where mask_image is white (>= 0.5), SD or SD-XL, 9- or 4-channel UNet.

    image and mask_image must have the same size (ValueError otherwise); height/width default to the image's size
    (diffusers defaults to the UNet's sample size; msdiff keeps the picture's own size). Other arguments as in
    text_to_image.
    """
    text, micro = split_conditioning("inpaint", conditioning)
    height, width = inpaint_size(components, image, mask_image, height, width)
    g = guidance_of(components, guidance_scale)
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    emb = text_conditioning(components, prompt, negative_prompt, text, guidance=uses_cfg(components, g),
                            num_images_per_prompt=num_images_per_prompt, tracker=tracker)
    smp = resolve_sampler(components.scheduler, sampler)
    schedule = make_schedule(smp, num_inference_steps, strength)
    x, pieces = inpaint_start(components, image, mask_image, emb.prompt_embeds.shape[0], schedule, noise_src,
                              height=height, width=width, strength=strength, latents=latents, vae_dtype=vae_dtype)
    tracker.add("initial latents", x)
    x = sd_denoise(components, emb, micro, x, schedule, smp, noise_src, guidance_scale=g, height=height,
                   width=width, guidance_rescale=guidance_rescale, pieces=pieces,
                   aesthetics=uses_aesthetics(components), callback=callback, mode=mode, tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)


FAMILIES = (Family("inpaint", inpaint, ("StableDiffusionInpaintPipeline", "StableDiffusionXLInpaintPipeline"),
                   {"prompt": "prompt", "negative_prompt": "negative_prompt", "guidance": "guidance_scale",
                    "sampler": "sampler", "size": "size", "image": "image", "strength": "strength",
                    "mask": "mask_image"}, ("image", "mask"), steps=30,
                   help="inpainting: --image and --mask (white = repaint) required"),)
