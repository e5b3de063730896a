"""instruct_pix2pix: edit an image by instruction (Brooks et al. 2023; diffusers' StableDiffusion[XL]InstructPix2Pix
Pipeline).

The 8-channel UNet sees [latents, image latents] (`ExtraChannels`); `Pix2Pix` guidance mixes three predictions,
uncond + s * (text - image) + s_img * (image - uncond), on the batch (text+image, image, neither). SD-XL's pooled
embeds and time ids are batched the same three ways (diffusers' StableDiffusionXLInstructPix2PixPipeline: the
positive time ids three times); SD-XL also takes guidance_rescale, denoising_end and CosXL's is_cosxl_edit.
"""
from typing import Callable, Optional

import numpy as np
from mindspore import ops as mops

from ..conditioning import ExtraChannels, NoGuidance, Pix2Pix, make_schedule
from ..samplers import FiniteTracker, noise_source, resolve_sampler
from ..samplers.denoiser import rescale_noise_cfg
from .family import Family, diffusers_names
from .images import default_size, preprocess_image
from .latents import check_size, encode_image, finish, prepare_latents, vae_scale_factor
from .sd import default_hw, guidance_of, is_xl, split_conditioning, text_conditioning, tile_batch
from .sd_run import sd_denoise


class RescaledPix2Pix(Pix2Pix):
    """Pix2Pix guidance rescaled toward the std of the text prediction (Lin et al. 2023, sec. 3.4), as diffusers'
    SD-XL InstructPix2Pix applies guidance_rescale."""

    def __init__(self, scale: float, image_scale: float, rescale: float):
        super().__init__(scale, image_scale)
        if not (np.isfinite(float(rescale)) and 0.0 < float(rescale) <= 1.0):
            raise ValueError(f"guidance_rescale must be in [0, 1], got {rescale!r}")
        self.rescale = float(rescale)
        self.key = ("pix2pix_rescaled", self.rescale)

    def combine(self, out, b: int, inputs: tuple, scales):
        text = out[:b]
        return rescale_noise_cfg(super().combine(out, b, inputs, scales), text, self.rescale)


def _size(components, image, height, width) -> tuple:
    """SD: the image's size (rounded to the VAE factor); SD-XL: the UNet's sample size unless given (diffusers)."""
    if is_xl(components):
        return default_hw(components, height, width)
    height, width = default_size(image, height, width, vae_scale_factor(components))
    check_size(components, height, width)
    return height, width


@diffusers_names
def instruct_pix2pix(components, prompt=None, image=None, negative_prompt=None, *, num_inference_steps: int = 100,
                     guidance_scale: Optional[float] = None, image_guidance_scale: float = 1.5,
                     guidance_rescale: float = 0.0, denoising_end: Optional[float] = None,
                     height: Optional[int] = None, width: Optional[int] = None, num_images_per_prompt: int = 1,
                     latents=None, output_type: str = "pil", seed: Optional[int] = None, sampler=None, noise=None,
                     callback: Optional[Callable] = None, mode: Optional[str] = None, vae_dtype="float32",
                     **conditioning):
    """Edit `image` following the instruction `prompt`; guidance on text (guidance_scale, default 7.5 for SD and
    5.0 for SD-XL) and image (image_guidance_scale). Image latents are the VAE posterior mean, unscaled, as in
    diffusers (times scaling_factor for a CosXL edit folder). SD-XL only: guidance_rescale, denoising_end and the
    positive micro-conditioning (original_size, crops_coords_top_left, target_size)."""
    if image is None:
        raise ValueError("instruct_pix2pix needs image=")
    text, micro = split_conditioning("instruct_pix2pix", conditioning)
    xl = is_xl(components)
    extra = [k for k in ("negative_original_size", "negative_crops_coords_top_left", "negative_target_size")
             if getattr(micro, k) is not None]
    if extra or (not xl and (guidance_rescale or denoising_end is not None)):
        raise TypeError(f"instruct_pix2pix() does not take {extra or ['guidance_rescale / denoising_end']} "
                        f"{'(SD-XL InstructPix2Pix has no negative micro-conditioning)' if extra else 'for SD 1.x'}")
    if isinstance(guidance_rescale, bool) or not isinstance(guidance_rescale, (int, float)) or \
            not 0.0 <= guidance_rescale <= 1.0:
        raise ValueError(f"instruct_pix2pix: guidance_rescale must be in [0, 1], got {guidance_rescale!r}")
    g = guidance_of(components, guidance_scale)
    height, width = _size(components, image, height, width)
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    guided = g > 1.0 and image_guidance_scale >= 1.0
    emb = text_conditioning(components, prompt, negative_prompt, text, guidance=guided,
                            num_images_per_prompt=num_images_per_prompt, tracker=tracker)
    batch = emb.prompt_embeds.shape[0]
    image_lat = tile_batch(encode_image(components, preprocess_image(image, height, width), None, vae_dtype,
                                        scale=False), batch)
    if xl and components.options.get("is_cosxl_edit", False):
        image_lat = image_lat * np.float32(components.vae.config.scaling_factor)
    if guided:
        image_lat = mops.concat([image_lat, image_lat, mops.zeros_like(image_lat)], axis=0)
    channels = components.unet.config.in_channels
    if channels != image_lat.shape[1] + components.vae.config.latent_channels:
        raise ValueError(f"instruct_pix2pix needs a UNet with latent + image channels "
                         f"({components.vae.config.latent_channels + image_lat.shape[1]}), this one has {channels}")
    smp = resolve_sampler(components.scheduler, sampler)
    schedule = make_schedule(smp, num_inference_steps, denoising_end=denoising_end)
    x = prepare_latents(components, batch, height, width, noise_src, latents, schedule.init_noise_sigma)
    tracker.add("initial latents", x)
    if not guided:
        guidance = NoGuidance()
    elif guidance_rescale > 0.0:
        guidance = RescaledPix2Pix(g, image_guidance_scale, guidance_rescale)
    else:
        guidance = Pix2Pix(g, image_guidance_scale)
    x = sd_denoise(components, emb, micro, x, schedule, smp, noise_src, guidance_scale=g, height=height,
                   width=width, guidance=guidance, pieces=[ExtraChannels(image_lat)], callback=callback, mode=mode,
                   tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)


FAMILIES = (Family("instruct_pix2pix", instruct_pix2pix, ("StableDiffusionInstructPix2PixPipeline",
                                                         "StableDiffusionXLInstructPix2PixPipeline"),
                   {"prompt": "prompt", "negative_prompt": "negative_prompt", "guidance": "guidance_scale",
                    "image_guidance": "image_guidance_scale", "sampler": "sampler", "image": "image"}, ("image",),
                   steps=100, help="edit --image (required) following --prompt; --image-guidance (default 1.5)"),)
