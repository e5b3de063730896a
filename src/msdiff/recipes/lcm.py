"""Latent consistency models (Luo et al. 2023): LCM text/image-to-image entry points and LCM's img2img schedule.

LCM checkpoints run through the common recipes (no classifier-free guidance; the guidance scale
enters the UNet as `timestep_cond`, a sinusoidal embedding of (w - 1) * 1000). What differs is
img2img: diffusers' LCMScheduler.set_timesteps(strength=s) draws the inference timesteps from the
first int(original_inference_steps * s) distillation timesteps instead of truncating the schedule.
`lcm_schedule` builds that Schedule (msdiff.samplers' LCM sampler has no strength argument yet).
"""
import numpy as np

from ..samplers import Schedule, prediction_coefficients, schedules
from .text_to_image import image_to_image, text_to_image

_f32 = np.float32


def _lcm_config(components, sampler) -> dict:
    config = sampler if isinstance(sampler, dict) else components.scheduler
    if not config or config.get("_class_name") != "LCMScheduler":
        raise ValueError("LCM image-to-image needs an LCMScheduler config (the checkpoint's or sampler=<dict>)")
    return config


def lcm_schedule(components, sampler, num_inference_steps: int, strength: float = 1.0) -> Schedule:
    """LCM's Schedule at img2img `strength` (diffusers LCMScheduler.set_timesteps(n, strength=strength))."""
    c = _lcm_config(components, sampler)
    T = c.get("num_train_timesteps", 1000)
    original = c.get("original_inference_steps", 50)
    acp = schedules.alphas_cumprod(c.get("beta_schedule", "scaled_linear"), T, c.get("beta_start", 0.00085),
                                   c.get("beta_end", 0.012), c.get("trained_betas"),
                                   c.get("rescale_betas_zero_snr", False))
    final = _f32(1.0) if c.get("set_alpha_to_one", True) else acp[0]
    origin = (np.arange(1, int(original * strength) + 1) * (T // original) - 1)[::-1]
    n = num_inference_steps
    if n > original or len(origin) // n < 1:
        raise ValueError(f"LCM: num_inference_steps {n} is more than original_inference_steps x strength = "
                         f"{original} x {strength}; lower num_inference_steps or raise strength")
    ts = origin[np.floor(np.linspace(0, len(origin), num=n, endpoint=False)).astype(np.int64)]
    prev = np.concatenate([ts[1:], ts[-1:]])
    a = acp[ts].astype(np.float64)
    a_prev = np.where(prev >= 0, acp[np.maximum(prev, 0)], final).astype(np.float64)
    # boundary-condition scalings c_skip, c_out (LCM paper eq. 6, sigma_data = 0.5)
    st = ts.astype(_f32) * _f32(c.get("timestep_scaling", 10.0))
    c_skip = (_f32(0.25) / (st * st + _f32(0.25))).astype(np.float64)
    c_out = (st / np.sqrt(st * st + _f32(0.25))).astype(np.float64)
    last = np.arange(n) == n - 1
    pred = prediction_coefficients(c.get("prediction_type", "epsilon"), np.sqrt(a), np.sqrt(1 - a))
    coefs = np.concatenate([pred, np.stack([c_out, c_skip, np.where(last, 1.0, np.sqrt(a_prev)),
                                            np.where(last, 0.0, np.sqrt(1 - a_prev))], -1)], -1)
    acp_t = acp[ts].astype(_f32)
    level = np.stack([np.sqrt(acp_t), np.sqrt(_f32(1.0) - acp_t)], axis=-1)
    return Schedule(timesteps=ts, sigmas=None, init_noise_sigma=1.0, input_div=np.ones(n, _f32),
                    coefs=coefs.astype(_f32), needs_noise=~last, noise_level=level, num_inference_steps=n)


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


__all__ = ["lcm_schedule", "lcm_text_to_image", "lcm_image_to_image"]
