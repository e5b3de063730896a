"""DeepFloyd IF stage II (diffusers' IFSuperResolutionPipeline, IFImg2ImgSuperResolutionPipeline,
IFInpaintingSuperResolutionPipeline) as recipes.

The low-resolution image (stage I's "pt" output, or any [-1, 1] image) is upscaled bilinearly (align_corners) to
the output size, noised to `noise_level` by the pipeline's `image_noising_scheduler` (DDPM add_noise, Ho et al.
2020 eq. 4) and appended to the sample as extra input channels; the UNet reads the noise level as class labels
(class_embed_type "timestep"). The rest is stage I's (recipes/deepfloyd_if.py): T5 prompt, guidance on the eps
half, IF's DDPM. Random draws in diffusers' order: the sample (or the original image's noise), then the low-res
image noise, then the sampler's.
"""
from typing import Callable, Optional

import numpy as np
from jaxtyping import Float
from mindspore import Tensor

from .. import ops
from ..conditioning import ExtraChannels, make_schedule
from ..samplers import sample
from ..samplers.schedules import alphas_cumprod
from .deepfloyd_if import (_OPTIONS, _start, batch_mask, finish, if_image, if_mask, if_model, keep_unmasked, prepare,
                           rows)
from .family import Family, diffusers_names
from .latents import initial_noise


def noising_alphas(components) -> np.ndarray:
    """Float32 alphas_cumprod of the pipeline's image_noising_scheduler (a DDPMScheduler config)."""
    config = components.extra.get("image_noising_scheduler")
    if not isinstance(config, dict):
        raise ValueError("IF stage II: the pipeline has no image_noising_scheduler (a DDPMScheduler config)")
    if config.get("_class_name", "DDPMScheduler") != "DDPMScheduler":
        raise ValueError(f"IF stage II: image_noising_scheduler must be a DDPMScheduler, got "
                         f"{config.get('_class_name')!r}")
    return alphas_cumprod(config.get("beta_schedule", "linear"), config.get("num_train_timesteps", 1000),
                          config.get("beta_start", 0.0001), config.get("beta_end", 0.02),
                          config.get("trained_betas"), config.get("rescale_betas_zero_snr", False))


def upscaled_image(components, image, num_images_per_prompt: int, height: int, width: int, noise_level,
                   noise_src) -> Float[Tensor, "b 3 h w"]:
    """The low-res image ([-1, 1]; PIL images are scaled, not resized) repeated per prompt image, bilinearly
    upscaled (align_corners=True) to height x width and noised to noise_level."""
    acp = noising_alphas(components)
    if isinstance(noise_level, bool) or not isinstance(noise_level, (int, np.integer)) or \
            not 0 <= noise_level < len(acp):
        raise ValueError(f"noise_level must be an integer in [0, {len(acp) - 1}], got {noise_level!r}")
    low = rows(if_image(image, None), num_images_per_prompt)
    up = ops.interpolate(low, size=(height, width), mode="bilinear", align_corners=True)
    eps = noise_src.draw(tuple(up.shape))
    a = np.float32(acp[int(noise_level)])
    return Tensor(np.sqrt(a)) * up + Tensor(np.sqrt(np.float32(1.0) - a)) * eps


def _check_rows(up: Tensor, b: int) -> None:
    if up.shape[0] != b:
        raise ValueError(f"image has {up.shape[0]} rows (after num_images_per_prompt) for a batch of {b}")


def _labels(level: int, b: int, guided: bool) -> Tensor:
    return Tensor(np.full(((2 if guided else 1) * b,), int(level), np.int64))


@diffusers_names
def deepfloyd_if_superres(components, prompt=None, image=None, *, height: Optional[int] = None,
                          width: Optional[int] = None, num_inference_steps: int = 50, guidance_scale: float = 4.0,
                          negative_prompt=None, num_images_per_prompt: int = 1, noise_level: int = 250,
                          prompt_embeds=None, negative_prompt_embeds=None, output_type: str = "pil",
                          clean_caption: bool = False, seed: Optional[int] = None, noise=None, sampler=None,
                          callback: Optional[Callable] = None, mode: Optional[str] = None):
    """IF stage II super-resolution (diffusers' IFSuperResolutionPipeline): `image` (stage I's output) to the
    UNet's sample_size (256 for IF-II), conditioned on the prompt and the noised upscaled image."""
    context, b, smp, noise_src, tracker = prepare(components, prompt, negative_prompt, guidance_scale,
                                                  num_images_per_prompt, prompt_embeds, negative_prompt_embeds,
                                                  sampler, seed, noise, clean_caption)
    unet = components.unet
    height = height or unet.config.sample_size
    width = width or unet.config.sample_size
    schedule = make_schedule(smp, num_inference_steps)
    x = initial_noise((b, unet.config.in_channels // 2, height, width), noise_src)
    if schedule.init_noise_sigma != 1.0:
        x = x * np.float32(schedule.init_noise_sigma)
    up = upscaled_image(components, image, num_images_per_prompt, height, width, noise_level, noise_src)
    _check_rows(up, b)
    model = if_model(components, smp, sampler, context, guidance_scale, ExtraChannels(up),
                     class_labels=_labels(noise_level, b, guidance_scale > 1.0))
    x = sample(model, x, schedule, smp, noise_src, callback, mode=mode, tracker=tracker)
    return finish(x, output_type)


def _from_original(components, prompt, image, original_image, mask_image, strength, num_inference_steps,
                   guidance_scale, negative_prompt, num_images_per_prompt, noise_level, prompt_embeds,
                   negative_prompt_embeds, output_type, clean_caption, seed, noise, sampler, callback, mode):
    """Stage II img2img (mask_image None) or inpainting: the original image noised at `strength`, the low-res image
    upscaled to its size as the extra channels."""
    if original_image is None:
        raise ValueError("original_image is required (the full-resolution picture to start from)")
    context, b, smp, noise_src, tracker = prepare(components, prompt, negative_prompt, guidance_scale,
                                                  num_images_per_prompt, prompt_embeds, negative_prompt_embeds,
                                                  sampler, seed, noise, clean_caption)
    mask = None
    if mask_image is not None:
        mask = batch_mask(if_mask(mask_image, components.unet.config.sample_size), b // num_images_per_prompt,
                          num_images_per_prompt)
    schedule, clean, x = _start(components, original_image, strength, num_inference_steps, smp, noise_src, b,
                                num_images_per_prompt)
    if mask is not None:
        x = (1 - mask) * clean + mask * x
    height, width = x.shape[2], x.shape[3]
    up = upscaled_image(components, image, num_images_per_prompt, height, width, noise_level, noise_src)
    _check_rows(up, b)
    model = if_model(components, smp, sampler, context, guidance_scale, ExtraChannels(up),
                     class_labels=_labels(noise_level, b, guidance_scale > 1.0))
    step_sampler = smp if mask is None else keep_unmasked(smp, mask)
    x = sample(model, x, schedule, step_sampler, noise_src, callback, mode=mode, tracker=tracker)
    return finish(x, output_type)


@diffusers_names
def deepfloyd_if_img2img_superres(components, image=None, original_image=None, *, strength: float = 0.8,
                                  prompt=None, num_inference_steps: int = 50, guidance_scale: float = 4.0,
                                  negative_prompt=None, num_images_per_prompt: int = 1, noise_level: int = 250,
                                  prompt_embeds=None, negative_prompt_embeds=None, output_type: str = "pil",
                                  clean_caption: bool = False, seed: Optional[int] = None, noise=None,
                                  sampler=None, callback: Optional[Callable] = None, mode: Optional[str] = None):
    """IF stage II image-to-image (diffusers' IFImg2ImgSuperResolutionPipeline): original_image (resized to the
    UNet's sample_size) noised at `strength`, guided by the low-res `image` and the prompt."""
    return _from_original(components, prompt, image, original_image, None, strength, num_inference_steps,
                          guidance_scale, negative_prompt, num_images_per_prompt, noise_level, prompt_embeds,
                          negative_prompt_embeds, output_type, clean_caption, seed, noise, sampler, callback, mode)


@diffusers_names
def deepfloyd_if_inpaint_superres(components, image=None, original_image=None, mask_image=None, *,
                                  strength: float = 0.8, prompt=None, num_inference_steps: int = 100,
                                  guidance_scale: float = 4.0, negative_prompt=None, num_images_per_prompt: int = 1,
                                  noise_level: int = 0, prompt_embeds=None, negative_prompt_embeds=None,
                                  output_type: str = "pil", clean_caption: bool = False, seed: Optional[int] = None,
                                  noise=None, sampler=None, callback: Optional[Callable] = None,
                                  mode: Optional[str] = None):
    """IF stage II inpainting (diffusers' IFInpaintingSuperResolutionPipeline): mask_image 1 = repaint in
    original_image, the low-res `image` as the upscaled condition."""
    if mask_image is None:
        raise ValueError("mask_image is required")
    return _from_original(components, prompt, image, original_image, mask_image, strength, num_inference_steps,
                          guidance_scale, negative_prompt, num_images_per_prompt, noise_level, prompt_embeds,
                          negative_prompt_embeds, output_type, clean_caption, seed, noise, sampler, callback, mode)


_NOISE_LEVEL = (("--noise-level", dict(type=int, default=None,
                                       help="IF stage II: noise added to the upscaled --image (0 .. 999)")),)
FAMILIES = (
    Family("deepfloyd_if_superres", deepfloyd_if_superres, ("IFSuperResolutionPipeline",),
           dict(_OPTIONS, image="image", size="size", noise_level="noise_level"), ("image",), steps=50,
           cli_options=_NOISE_LEVEL, help="DeepFloyd IF stage II: --image (stage I's output) upscaled"),
    Family("deepfloyd_if_img2img_superres", deepfloyd_if_img2img_superres, ("IFImg2ImgSuperResolutionPipeline",),
           dict(_OPTIONS, image="image", original_image="original_image", strength="strength",
                noise_level="noise_level"), ("image", "original_image"), steps=50,
           cli_options=_NOISE_LEVEL + (("--original-image", dict(default=None, help="IF stage II img2img / "
                                                                                    "inpainting: the full-size "
                                                                                    "picture")),),
           help="DeepFloyd IF stage II from --original-image, conditioned on the low-res --image"),
    Family("deepfloyd_if_inpaint_superres", deepfloyd_if_inpaint_superres, ("IFInpaintingSuperResolutionPipeline",),
           dict(_OPTIONS, image="image", original_image="original_image", mask="mask_image", strength="strength",
                noise_level="noise_level"), ("image", "original_image", "mask"), steps=100,
           help="DeepFloyd IF stage II inpainting of --original-image under --mask, with the low-res --image"),
)
