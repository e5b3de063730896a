"""depth_to_image: StableDiffusionDepth2ImgPipeline (stabilityai/stable-diffusion-2-depth) as a recipe.

img2img whose UNet takes one extra input channel: the depth of the input image (estimated by the pipeline's
DPT depth_estimator, or given as depth_map [b, H, W]), resized to the latent size and scaled to [-1, 1]
(`dpt_image.depth_condition`). The estimator sees the original image through the DPTImageProcessor settings of
the folder's feature_extractor/preprocessor_config.json.
"""
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from mindspore import Tensor

from ..conditioning import ExtraChannels, make_schedule
from ..samplers import FiniteTracker, noise_source, resolve_sampler
from .dpt_image import DPTImageConfig, depth_condition, dpt_image_config, load_dpt_image_config, preprocess
from .family import Family, diffusers_names
from .images import image_size
from .latents import finish, vae_scale_factor
from .sd import guidance_of, default_steps, split_conditioning, text_conditioning, tile_batch, uses_cfg
from .sd_run import sd_denoise
from .text_to_image import image_start


def _processor_config(components) -> DPTImageConfig:
    fe = components.extra.get("feature_extractor")
    if isinstance(fe, dict):
        return dpt_image_config(fe)
    folder = Path(components.name_or_path or ".") / "feature_extractor"
    return load_dpt_image_config(folder) if (folder / "preprocessor_config.json").is_file() else DPTImageConfig()


def estimate_depth(components, image) -> Tensor:
    """predicted_depth [b, H, W] of the pipeline's depth_estimator for PIL / numpy image(s)."""
    estimator = components.extra.get("depth_estimator")
    if estimator is None:
        raise ValueError("depth_to_image: the pipeline has no depth_estimator; pass depth_map=")
    return estimator(preprocess(image, _processor_config(components)))


@diffusers_names
def depth_to_image(components, prompt=None, image=None, depth_map=None, negative_prompt=None, *,
                   strength: float = 0.8, num_inference_steps: Optional[int] = None,
                   guidance_scale: Optional[float] = None, num_images_per_prompt: int = 1, latents=None,
                   output_type: str = "pil", seed: Optional[int] = None, sampler=None, noise=None,
                   callback: Optional[Callable] = None, mode: Optional[str] = None, vae_dtype="float32",
                   **conditioning):
    """Images from an image, its depth and text (diffusers' StableDiffusionDepth2ImgPipeline); arguments as
    image_to_image plus depth_map (predicted depth [b, H, W]; None: estimated from `image`)."""
    if image is None:
        raise ValueError("depth_to_image needs image=")
    text, micro = split_conditioning("depth_to_image", conditioning)
    steps = default_steps(components, num_inference_steps)
    g = guidance_of(components, guidance_scale)
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    emb = text_conditioning(components, prompt, negative_prompt, text, guidance=uses_cfg(components, g),
                            num_images_per_prompt=num_images_per_prompt, tracker=tracker)
    h0, w0 = image_size(image)
    depth = estimate_depth(components, image) if depth_map is None else \
        Tensor(np.asarray(depth_map.asnumpy() if isinstance(depth_map, Tensor) else depth_map, np.float32))
    depth = tile_batch(depth_condition(depth, h0, w0, vae_scale_factor(components)), emb.prompt_embeds.shape[0])
    smp = resolve_sampler(components.scheduler, sampler)
    schedule = make_schedule(smp, steps, strength)
    x, height, width = image_start(components, image, emb, schedule, noise_src, height=None, width=None,
                                   latents=latents, denoising_start=None, vae_dtype=vae_dtype)
    if tuple(depth.shape[2:]) != tuple(x.shape[2:]):
        raise ValueError(f"depth_map: resized to {tuple(depth.shape[2:])}, but the latents are {tuple(x.shape[2:])}")
    tracker.add("initial latents (image encode)", x)
    x = sd_denoise(components, emb, micro, x, schedule, smp, noise_src, guidance_scale=g, height=height,
                   width=width, pieces=(ExtraChannels(depth),), callback=callback, mode=mode, tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)


FAMILIES = (
    Family("depth_to_image", depth_to_image, ("StableDiffusionDepth2ImgPipeline",),
           {"prompt": "prompt", "negative_prompt": "negative_prompt", "guidance": "guidance_scale",
            "sampler": "sampler", "image": "image", "strength": "strength"}, ("image",), steps=30,
           help="image-to-image guided by the image's depth (estimated by the pipeline's DPT)"),
)
