"""Where a run starts: img2img's strength (the calls that remain, the image latents noised to the first of
them) and SD-XL's denoising_start / denoising_end hand-off."""
import dataclasses
from typing import Optional, Tuple

import numpy as np
from jaxtyping import Float
from mindspore import Tensor

from ..samplers import Sampler, Schedule, add_noise, img2img_schedule


def start_from_image(sampler: Sampler, num_inference_steps: int, strength: float,
                     image_latents: Float[Tensor, "b c h w"], noise: Float[Tensor, "b c h w"]
                     ) -> Tuple[Schedule, Float[Tensor, "b c h w"]]:
    """(schedule of the kept calls, starting sample): diffusers' img2img get_timesteps + prepare_latents."""
    schedule = make_schedule(sampler, num_inference_steps, strength)
    return schedule, add_noise(schedule, image_latents, noise, 0)


def truncate(schedule: Schedule, stop: int) -> Schedule:
    """The first `stop` calls of a schedule (their coefficients unchanged)."""
    cut = {f: getattr(schedule, f)[:stop] for f in ("timesteps", "input_div", "coefs", "needs_noise", "noise_level")}
    return dataclasses.replace(schedule, _rows=(), **cut)


def _end_cutoff(sampler: Sampler, fraction: float) -> int:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"denoising_start / denoising_end must be in (0, 1), got {fraction!r}")
    t = sampler.num_train_timesteps
    return int(round(t - fraction * t))


def make_schedule(sampler: Sampler, num_inference_steps: int, strength: float = 1.0,
                  denoising_start: Optional[float] = None, denoising_end: Optional[float] = None) -> Schedule:
    """The calls of a run: img2img `strength` truncation, or SD-XL's denoising_start / denoising_end hand-off."""
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
    if denoising_start is not None:
        full = sampler.schedule(num_inference_steps)
        cutoff = _end_cutoff(sampler, denoising_start)
        n = int((np.asarray(full.timesteps) < cutoff).sum())
        if sampler.order == 2 and n % 2 == 0:
            n += 1
        schedule = sampler.make_schedule(num_inference_steps, len(full) - n)
    elif strength < 1.0:
        schedule = img2img_schedule(sampler, num_inference_steps, strength)
    else:
        if strength != 1.0:
            img2img_schedule(sampler, num_inference_steps, strength)  # raises: strength outside (0, 1]
        schedule = sampler.schedule(num_inference_steps)
    if denoising_end is not None:
        cutoff = _end_cutoff(sampler, denoising_end)
        schedule = truncate(schedule, int((np.asarray(schedule.timesteps) >= cutoff).sum()))
    if len(schedule) == 0:
        raise ValueError(f"no denoising steps left: num_inference_steps={num_inference_steps}, strength={strength}; "
                         f"raise num_inference_steps or strength")
    return schedule
