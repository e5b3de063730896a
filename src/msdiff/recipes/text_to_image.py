"""text_to_image and image_to_image for SD 1.x/2.x, SD-XL (base and refiner) and latent consistency models.

Both are short compositions of the public steps; the same code serves every family, which is
read from the components (`is_xl`, `is_lcm`). Argument names are diffusers'.
"""
from typing import Callable, Optional

import mindspore as ms
from mindspore import Tensor

from .conditioning import default_guidance, default_hw, is_lcm, is_xl, make_denoiser, text_conditioning, tile_batch, \
    uses_cfg
from .denoise import denoise, make_schedule, resolve_sampler
from .steps import (FiniteTracker, NoiseSource, default_size, encode_image, finish, is_latent_image, prepare_latents,
                    preprocess_image, vae_scale_factor)
from ..samplers import add_noise


def text_to_image(components, prompt=None, negative_prompt=None, *, num_inference_steps: Optional[int] = None,
                  guidance_scale: Optional[float] = None, guidance_rescale: float = 0.0,
                  height: Optional[int] = None, width: Optional[int] = None, num_images_per_prompt: int = 1,
                  latents=None, clip_skip: Optional[int] = None, prompt_embeds: Optional[Tensor] = None,
                  negative_prompt_embeds: Optional[Tensor] = None, pooled_prompt_embeds: Optional[Tensor] = None,
                  negative_pooled_prompt_embeds: Optional[Tensor] = None, prompt_2=None, negative_prompt_2=None,
                  original_size=None, crops_coords_top_left=(0, 0), target_size=None,
                  negative_original_size=None, negative_crops_coords_top_left=None, negative_target_size=None,
                  denoising_end: Optional[float] = None, output_type: str = "pil", seed: Optional[int] = None,
                  sampler=None, noise=None, callback: Optional[Callable] = None, mode: str = "pynative",
                  vae_dtype="float32"):
    """Images from text (diffusers' StableDiffusion[XL]Pipeline / LatentConsistencyModelPipeline).

    Returns a list of PIL images, an array (b, h, w, 3) in [0, 1] ("np") or the latents ("latent").
    seed / noise: every random draw comes from a numpy PCG64 seeded with `seed`, or in order from the
    `noise` arrays (or noise(shape) callable). mode="graph" compiles the denoising step.
    vae_dtype: the VAE decodes in float32 by default even for fp16 components (None: as loaded).
    """
    lcm = is_lcm(components)
    steps = num_inference_steps or (4 if lcm else 50)
    g = default_guidance(components) if guidance_scale is None else guidance_scale
    height, width = default_hw(components, height, width)
    noise_src, tracker = NoiseSource(seed, noise), FiniteTracker()
    emb = text_conditioning(components, prompt, negative_prompt, guidance=uses_cfg(components, g),
                            num_images_per_prompt=num_images_per_prompt, clip_skip=clip_skip,
                            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds,
                            pooled_prompt_embeds=pooled_prompt_embeds,
                            negative_pooled_prompt_embeds=negative_pooled_prompt_embeds, prompt_2=prompt_2,
                            negative_prompt_2=negative_prompt_2, tracker=tracker)
    smp = resolve_sampler(components, sampler)
    schedule = make_schedule(smp, steps, denoising_end=denoising_end)
    x = prepare_latents(components, emb.prompt_embeds.shape[0], height, width, noise_src, latents,
                        schedule.init_noise_sigma)
    tracker.add("initial latents", x)
    den = make_denoiser(components, emb, guidance_scale=g, guidance_rescale=guidance_rescale, height=height,
                        width=width, original_size=original_size, crops_coords_top_left=crops_coords_top_left,
                        target_size=target_size, negative_original_size=negative_original_size,
                        negative_crops_coords_top_left=negative_crops_coords_top_left,
                        negative_target_size=negative_target_size)
    x = denoise(den, smp, schedule, x, noise_src, mode, callback, tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)


def image_latents(components, image, height: Optional[int], width: Optional[int], noise: NoiseSource,
                  vae_dtype="float32"):
    """(init latents, height, width) of an img2img input: given latents (b, 4, h, w) or a VAE posterior sample."""
    f = vae_scale_factor(components)
    if is_latent_image(image):
        z = image if isinstance(image, Tensor) else Tensor(image)
        return z.astype(ms.float32), z.shape[2] * f, z.shape[3] * f
    height, width = default_size(image, height, width, f)
    default_hw(components, height, width)
    return encode_image(components, preprocess_image(image, height, width), noise, vae_dtype), height, width


def image_to_image(components, prompt=None, image=None, negative_prompt=None, *, strength: float = 0.8,
                   num_inference_steps: Optional[int] = None, guidance_scale: Optional[float] = None,
                   guidance_rescale: float = 0.0, height: Optional[int] = None, width: Optional[int] = None,
                   num_images_per_prompt: int = 1, latents=None, clip_skip: Optional[int] = None,
                   prompt_embeds: Optional[Tensor] = None, negative_prompt_embeds: Optional[Tensor] = None,
                   pooled_prompt_embeds: Optional[Tensor] = None,
                   negative_pooled_prompt_embeds: Optional[Tensor] = None, prompt_2=None, negative_prompt_2=None,
                   original_size=None, crops_coords_top_left=(0, 0), target_size=None,
                   negative_original_size=None, negative_crops_coords_top_left=None, negative_target_size=None,
                   aesthetic_score: float = 6.0, negative_aesthetic_score: float = 2.5,
                   denoising_start: Optional[float] = None, denoising_end: Optional[float] = None,
                   output_type: str = "pil", seed: Optional[int] = None, sampler=None, noise=None,
                   callback: Optional[Callable] = None, mode: str = "pynative", vae_dtype="float32"):
    """Images from an image and text (diffusers' StableDiffusion[XL]Img2ImgPipeline / LCM img2img).

    `image`: PIL / numpy / path, or latents (b, 4, h, w) from a base model's output_type="latent"
    (the SD-XL refiner hand-off, with denoising_start). `latents`, if given, is the noise added to
    the image latents. Other arguments as in text_to_image.
    """
    if image is None:
        raise ValueError("image_to_image needs image=")
    lcm = is_lcm(components)
    steps = num_inference_steps or (4 if lcm else 50)
    g = default_guidance(components) if guidance_scale is None else guidance_scale
    noise_src, tracker = NoiseSource(seed, noise), FiniteTracker()
    emb = text_conditioning(components, prompt, negative_prompt, guidance=uses_cfg(components, g),
                            num_images_per_prompt=num_images_per_prompt, clip_skip=clip_skip,
                            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds,
                            pooled_prompt_embeds=pooled_prompt_embeds,
                            negative_pooled_prompt_embeds=negative_pooled_prompt_embeds, prompt_2=prompt_2,
                            negative_prompt_2=negative_prompt_2, tracker=tracker)
    smp = resolve_sampler(components, sampler)
    schedule = make_schedule(smp, steps, strength, denoising_start, denoising_end)
    init, height, width = image_latents(components, image, height, width, noise_src, vae_dtype)
    init = tile_batch(init, emb.prompt_embeds.shape[0])
    if denoising_start is None:
        eps = prepare_latents(components, init.shape[0], height, width, noise_src, latents)
        x = add_noise(schedule, init, eps, 0)
    else:
        x = init
    tracker.add("initial latents (image encode)", x)
    den = make_denoiser(components, emb, guidance_scale=g, guidance_rescale=guidance_rescale, height=height,
                        width=width, original_size=original_size, crops_coords_top_left=crops_coords_top_left,
                        target_size=target_size, negative_original_size=negative_original_size,
                        negative_crops_coords_top_left=negative_crops_coords_top_left,
                        negative_target_size=negative_target_size, aesthetic_score=aesthetic_score,
                        negative_aesthetic_score=negative_aesthetic_score,
                        use_aesthetics=is_xl(components) and components.options.get("requires_aesthetics_score",
                                                                                     False))
    x = denoise(den, smp, schedule, x, noise_src, mode, callback, tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)
