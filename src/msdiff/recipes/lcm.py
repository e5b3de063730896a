"""Latent consistency models (Luo et al. 2023): LCM text/image-to-image entry points and LCM's img2img schedule.

LCM checkpoints run through the common recipes (no classifier-free guidance; the guidance scale
enters the UNet as `timestep_cond`, a sinusoidal embedding of (w - 1) * 1000). What differs is
img2img: diffusers' LCMScheduler.set_timesteps(strength=s) draws the inference timesteps from the
first int(original_inference_steps * s) distillation timesteps instead of truncating the schedule;
the LCM sampler's own img2img rule (`msdiff.samplers.img2img_schedule`) does that.
"""
from .text_to_image import image_to_image, text_to_image

def lcm_text_to_image(components, prompt=None, *, num_inference_steps: int = 4, guidance_scale: float = 8.5,
                      **kwargs):
    """diffusers' LatentConsistencyModelPipeline: text_to_image with LCM's defaults (4 steps, w = 8.5)."""
    return text_to_image(components, prompt, num_inference_steps=num_inference_steps,
                         guidance_scale=guidance_scale, **kwargs)


def lcm_image_to_image(components, prompt=None, image=None, *, num_inference_steps: int = 4,
                       guidance_scale: float = 8.5, strength: float = 0.8, **kwargs):
    """diffusers' LatentConsistencyModelImg2ImgPipeline: image_to_image with LCM's schedule and defaults."""
    return image_to_image(components, prompt, image, num_inference_steps=num_inference_steps,
                          guidance_scale=guidance_scale, strength=strength, **kwargs)


__all__ = ["lcm_text_to_image", "lcm_image_to_image"]
