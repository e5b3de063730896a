"""instruct_pix2pix: edit an image by instruction (Brooks et al. 2023; diffusers' StableDiffusion[XL]InstructPix2Pix
Pipeline).

The 8-channel UNet sees [latents, image latents] (`ExtraChannels`); `Pix2Pix` guidance mixes three predictions,
uncond + s * (text - image) + s_img * (image - uncond), on the batch (text+image, image, neither). SD-XL's pooled
embeds and time ids are batched the same three ways.
"""
from typing import Callable, Optional

from mindspore import ops as mops

from ..conditioning import ExtraChannels, NoGuidance, Pix2Pix, make_schedule
from ..samplers import FiniteTracker, noise_source, resolve_sampler
from .family import Family
from .images import default_size, preprocess_image
from .latents import check_size, encode_image, finish, prepare_latents, vae_scale_factor
from .sd import guidance_of, split_conditioning, text_conditioning, tile_batch
from .sd_run import sd_denoise


def instruct_pix2pix(components, prompt=None, image=None, negative_prompt=None, *, num_inference_steps: int = 100,
                     guidance_scale: Optional[float] = None, image_guidance_scale: float = 1.5,
                     height: Optional[int] = None, width: Optional[int] = None, num_images_per_prompt: int = 1,
                     latents=None, output_type: str = "pil", seed: Optional[int] = None, sampler=None, noise=None,
                     callback: Optional[Callable] = None, mode: Optional[str] = None, vae_dtype="float32",
                     **conditioning):
    """Edit `image` following the instruction `prompt`; guidance on text (guidance_scale, default 7.5 for SD and
    5.0 for SD-XL) and image (image_guidance_scale). Image latents are the VAE posterior mean, unscaled, as in
    diffusers."""
    if image is None:
        raise ValueError("instruct_pix2pix needs image=")
    text, micro = split_conditioning("instruct_pix2pix", conditioning)
    g = guidance_of(components, guidance_scale)
    height, width = default_size(image, height, width, vae_scale_factor(components))
    check_size(components, height, width)
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    guided = g > 1.0 and image_guidance_scale >= 1.0
    emb = text_conditioning(components, prompt, negative_prompt, text, guidance=guided,
                            num_images_per_prompt=num_images_per_prompt, tracker=tracker)
    batch = emb.prompt_embeds.shape[0]
    image_lat = tile_batch(encode_image(components, preprocess_image(image, height, width), None, vae_dtype,
                                        scale=False), batch)
    if guided:
        image_lat = mops.concat([image_lat, image_lat, mops.zeros_like(image_lat)], axis=0)
    channels = components.unet.config.in_channels
    if channels != image_lat.shape[1] + components.vae.config.latent_channels:
        raise ValueError(f"instruct_pix2pix needs a UNet with latent + image channels "
                         f"({components.vae.config.latent_channels + image_lat.shape[1]}), this one has {channels}")
    smp = resolve_sampler(components.scheduler, sampler)
    schedule = make_schedule(smp, num_inference_steps)
    x = prepare_latents(components, batch, height, width, noise_src, latents, schedule.init_noise_sigma)
    tracker.add("initial latents", x)
    guidance = Pix2Pix(g, image_guidance_scale) if guided else NoGuidance()
    x = sd_denoise(components, emb, micro, x, schedule, smp, noise_src, guidance_scale=g, height=height,
                   width=width, guidance=guidance, pieces=[ExtraChannels(image_lat)], callback=callback, mode=mode,
                   tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)


FAMILIES = (Family("instruct_pix2pix", instruct_pix2pix, ("StableDiffusionInstructPix2PixPipeline",),
                   {"prompt": "prompt", "negative_prompt": "negative_prompt", "guidance": "guidance_scale",
                    "image_guidance": "image_guidance_scale", "sampler": "sampler", "image": "image"}, ("image",),
                   steps=100, help="edit --image (required) following --prompt; --image-guidance (default 1.5)"),)
