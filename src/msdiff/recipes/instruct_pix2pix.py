"""instruct_pix2pix: edit an image by instruction (Brooks et al. 2023; diffusers' StableDiffusionInstructPix2PixPipeline).

The 8-channel UNet sees [latents, image latents]; guidance mixes three predictions,
uncond + s * (text - image) + s_img * (image - uncond), on the batch (text+image, image, neither).
"""
from typing import Callable, Optional

from mindspore import Tensor
from mindspore import ops as mops

from .conditioning import make_denoiser, text_conditioning, tile_batch
from .denoise import denoise, make_schedule, resolve_sampler
from .steps import (FiniteTracker, NoiseSource, check_size, default_size, encode_image, finish, prepare_latents,
                    preprocess_image, vae_scale_factor)


def instruct_pix2pix(components, prompt=None, image=None, negative_prompt=None, *, num_inference_steps: int = 100,
                     guidance_scale: float = 7.5, image_guidance_scale: float = 1.5,
                     num_images_per_prompt: int = 1, latents=None, prompt_embeds: Optional[Tensor] = None,
                     negative_prompt_embeds: Optional[Tensor] = None, output_type: str = "pil",
                     seed: Optional[int] = None, sampler=None, noise=None, callback: Optional[Callable] = None,
                     mode: str = "pynative", vae_dtype="float32"):
    """Edit `image` following the instruction `prompt`; guidance on text (guidance_scale) and image
    (image_guidance_scale). Image latents are the VAE posterior mean, unscaled, as in diffusers."""
    if image is None:
        raise ValueError("instruct_pix2pix needs image=")
    height, width = default_size(image, None, None, vae_scale_factor(components))
    check_size(components, height, width)
    noise_src, tracker = NoiseSource(seed, noise), FiniteTracker()
    guidance = guidance_scale > 1.0 and image_guidance_scale >= 1.0
    emb = text_conditioning(components, prompt, negative_prompt, guidance=guidance,
                            num_images_per_prompt=num_images_per_prompt, clip_skip=None,
                            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds,
                            tracker=tracker)
    batch = emb.prompt_embeds.shape[0]
    image_lat = tile_batch(encode_image(components, preprocess_image(image, height, width), None, vae_dtype,
                                        scale=False), batch)
    if guidance:
        image_lat = mops.concat([image_lat, image_lat, mops.zeros_like(image_lat)], axis=0)
    channels = components.unet.config.in_channels
    if channels != image_lat.shape[1] + components.vae.config.latent_channels:
        raise ValueError(f"instruct_pix2pix needs a UNet with latent + image channels "
                         f"({components.vae.config.latent_channels + image_lat.shape[1]}), this one has {channels}")
    smp = resolve_sampler(components, sampler)
    schedule = make_schedule(smp, num_inference_steps)
    x = prepare_latents(components, batch, height, width, noise_src, latents, schedule.init_noise_sigma)
    tracker.add("initial latents", x)
    den = make_denoiser(components, emb, guidance_scale=guidance_scale, height=height, width=width,
                        extra=image_lat, kind="pix2pix" if guidance else "none")
    den = den._replace(image_guidance_scale=float(image_guidance_scale))
    x = denoise(den, smp, schedule, x, noise_src, mode, callback, tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)
