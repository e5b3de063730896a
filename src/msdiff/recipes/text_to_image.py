"""text_to_image and image_to_image for SD 1.x/2.x, SD-XL (base and refiner) and latent consistency models.

Both are short compositions of the public steps; the same code serves every family, which is read from the
components (`is_xl`, `is_lcm`). Argument names are diffusers'; the prompt overrides (prompt_embeds, prompt_2,
clip_skip, ...) and SD-XL's micro-conditioning (original_size, crops_coords_top_left, target_size, their
negative_* forms, aesthetic_score, negative_aesthetic_score) are accepted as keywords (`sd.split_conditioning`).
"""
from typing import Callable, Optional

import mindspore as ms
from mindspore import Tensor

from ..conditioning import make_schedule
from ..samplers import FiniteTracker, add_noise, noise_source, resolve_sampler
from .family import Family, diffusers_names
from .images import default_size, is_latent_image, preprocess_image
from .latents import encode_image, finish, prepare_latents, vae_scale_factor
from .sd import guidance_of, default_hw, default_steps, split_conditioning, text_conditioning, tile_batch, \
    uses_aesthetics, uses_cfg
from .sd_run import sd_denoise


@diffusers_names
def text_to_image(components, prompt=None, negative_prompt=None, *, num_inference_steps: Optional[int] = None,
                  guidance_scale: Optional[float] = None, guidance_rescale: float = 0.0,
                  height: Optional[int] = None, width: Optional[int] = None, num_images_per_prompt: int = 1,
                  latents=None, denoising_end: Optional[float] = None, output_type: str = "pil",
                  seed: Optional[int] = None, sampler=None, noise=None, callback: Optional[Callable] = None,
                  mode: Optional[str] = None, vae_dtype="float32", **conditioning):
    """Images from text (diffusers' StableDiffusion[XL]Pipeline / LatentConsistencyModelPipeline).

    Returns a list of PIL images, an array (b, h, w, 3) in [0, 1] ("np") or the latents ("latent").
    seed / noise: every random draw comes from a numpy PCG64 seeded with `seed`, or in order from the
    `noise` arrays (or noise(shape) callable, or a numpy Generator). mode="graph" compiles the denoising step.
    vae_dtype: the VAE decodes in float32 by default even for fp16 components (None: as loaded).
    """
    text, micro = split_conditioning("text_to_image", conditioning)
    steps = default_steps(components, num_inference_steps)
    g = guidance_of(components, guidance_scale)
    height, width = default_hw(components, height, width)
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    emb = text_conditioning(components, prompt, negative_prompt, text, guidance=uses_cfg(components, g),
                            num_images_per_prompt=num_images_per_prompt, tracker=tracker)
    smp = resolve_sampler(components.scheduler, sampler)
    schedule = make_schedule(smp, steps, denoising_end=denoising_end)
    x = prepare_latents(components, emb.prompt_embeds.shape[0], height, width, noise_src, latents,
                        schedule.init_noise_sigma)
    tracker.add("initial latents", x)
    x = sd_denoise(components, emb, micro, x, schedule, smp, noise_src, guidance_scale=g, height=height,
                   width=width, guidance_rescale=guidance_rescale, callback=callback, mode=mode, tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)


def image_latents(components, image, height: Optional[int], width: Optional[int], noise,
                  vae_dtype="float32"):
    """(init latents, height, width) of an img2img input: given latents (b, 4, h, w) or a VAE posterior sample."""
    f = vae_scale_factor(components)
    if is_latent_image(image):
        z = image if isinstance(image, Tensor) else Tensor(image)
        return z.astype(ms.float32), z.shape[2] * f, z.shape[3] * f
    height, width = default_size(image, height, width, f)
    default_hw(components, height, width)
    return encode_image(components, preprocess_image(image, height, width), noise, vae_dtype), height, width


def image_start(components, image, emb, schedule, noise_src, *, height, width, latents, denoising_start,
                vae_dtype):
    """(starting latents, height, width) of img2img: the image latents noised to the first kept call (or as they
    are for the refiner's denoising_start hand-off). Draws: image posterior sample, then the noise."""
    init, height, width = image_latents(components, image, height, width, noise_src, vae_dtype)
    init = tile_batch(init, emb.prompt_embeds.shape[0])
    if denoising_start is not None:
        return init, height, width
    eps = prepare_latents(components, init.shape[0], height, width, noise_src, latents)
    return add_noise(schedule, init, eps, 0), height, width


@diffusers_names
def image_to_image(components, prompt=None, image=None, negative_prompt=None, *, strength: float = 0.8,
                   num_inference_steps: Optional[int] = None, guidance_scale: Optional[float] = None,
                   guidance_rescale: float = 0.0, height: Optional[int] = None, width: Optional[int] = None,
                   num_images_per_prompt: int = 1, latents=None, denoising_start: Optional[float] = None,
                   denoising_end: Optional[float] = None, output_type: str = "pil", seed: Optional[int] = None,
                   sampler=None, noise=None, callback: Optional[Callable] = None, mode: Optional[str] = None,
                   vae_dtype="float32", **conditioning):
    """Images from an image and text (diffusers' StableDiffusion[XL]Img2ImgPipeline / LCM img2img).

    `image`: PIL / numpy / path, or latents (b, 4, h, w) from a base model's output_type="latent"
    (the SD-XL refiner hand-off, with denoising_start). `latents`, if given, is the noise added to
    the image latents. Other arguments as in text_to_image.
    """
    if image is None:
        raise ValueError("image_to_image needs image=")
    text, micro = split_conditioning("image_to_image", conditioning)
    steps = default_steps(components, num_inference_steps)
    g = guidance_of(components, guidance_scale)
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    emb = text_conditioning(components, prompt, negative_prompt, text, guidance=uses_cfg(components, g),
                            num_images_per_prompt=num_images_per_prompt, tracker=tracker)
    smp = resolve_sampler(components.scheduler, sampler)
    schedule = make_schedule(smp, steps, strength, denoising_start, denoising_end)
    x, height, width = image_start(components, image, emb, schedule, noise_src, height=height, width=width,
                                   latents=latents, denoising_start=denoising_start, vae_dtype=vae_dtype)
    tracker.add("initial latents (image encode)", x)
    x = sd_denoise(components, emb, micro, x, schedule, smp, noise_src, guidance_scale=g, height=height,
                   width=width, guidance_rescale=guidance_rescale, aesthetics=uses_aesthetics(components),
                   callback=callback, mode=mode, tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)


_SD_OPTIONS = {"prompt": "prompt", "negative_prompt": "negative_prompt", "guidance": "guidance_scale",
               "sampler": "sampler", "size": "size", "image": "image", "strength": "strength", "mask": "mask_image"}


def sd_cli(args, components, kwargs: dict) -> tuple:
    """text_to_image, or image_to_image with --image, or inpaint with --image and --mask; --strength defaults to
    0.8 for img2img and 1.0 for inpainting (diffusers')."""
    from .inpaint import inpaint
    if "mask_image" in kwargs:
        if "image" not in kwargs:
            raise ValueError("--mask needs --image (the picture to inpaint)")
        return inpaint, kwargs
    if "image" in kwargs:
        return image_to_image, dict({"strength": 0.8}, **kwargs)
    if "strength" in kwargs:
        raise ValueError("--strength needs --image (the picture to start from)")
    return text_to_image, kwargs


FAMILIES = (
    Family("stable_diffusion", text_to_image, ("StableDiffusionPipeline", "StableDiffusionXLPipeline",
                                               "LatentConsistencyModelPipeline"), _SD_OPTIONS, steps=30,
           prepare=sd_cli, help="text-to-image; with --image image-to-image; with --image and --mask inpainting"),
    Family("image_to_image", image_to_image, ("StableDiffusionImg2ImgPipeline", "StableDiffusionXLImg2ImgPipeline",
                                              "LatentConsistencyModelImg2ImgPipeline"), _SD_OPTIONS, ("image",),
           steps=30, prepare=sd_cli, help="image-to-image: --image required, --strength (default 0.8)"),
)
