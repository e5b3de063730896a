"""Sampler and Schedule descriptions, add_noise and img2img truncation (the loop is samplers.loop)."""
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from mindspore import Tensor
from jaxtyping import Float

from .schedules import check_steps


@dataclass(frozen=True)
class Schedule:
    """Per-model-call tables of one sampler for one step count (what diffusers' set_timesteps makes).

    timesteps: the timestep the net sees at call i (diffusers' `scheduler.timesteps`).
    sigmas: diffusers' `scheduler.sigmas` (None for samplers without one).
    input_div: the net input is x / input_div[i] (diffusers' `scale_model_input`).
    coefs: float32 rows (n, k) fed to the step function; the first 6 columns convert the net output.
    needs_noise: call i consumes a fresh standard-normal tensor.
    noise_level: rows (a, b): a sample at call i is a*x0 + b*noise (`add_noise`).
    columns: the k column names of coefs (`denoiser.Columns.names` of the sampler).
    """

    timesteps: np.ndarray
    sigmas: Optional[np.ndarray]
    init_noise_sigma: float
    input_div: np.ndarray
    coefs: np.ndarray
    needs_noise: np.ndarray
    noise_level: np.ndarray
    num_inference_steps: int
    columns: tuple
    _rows: tuple = field(default=(), repr=False, compare=False)

    def __post_init__(self):
        if np.ndim(self.coefs) != 2 or np.shape(self.coefs)[1] != len(self.columns):
            raise ValueError(f"Schedule: coefs of shape {np.shape(self.coefs)} need one name per column, "
                             f"got {len(self.columns)} names {self.columns}")

    def __len__(self) -> int:
        return len(self.timesteps)

    def rows(self) -> tuple:
        """The coefficient rows as float32 Tensors, built once."""
        if not self._rows:
            object.__setattr__(self, "_rows", tuple(Tensor(r) for r in self.coefs.astype(np.float32)))
        return self._rows

    def scale_model_input(self, x: Float[Tensor, "b c h w"], i: int) -> Float[Tensor, "b c h w"]:
        """The net input at call i (diffusers' scheduler.scale_model_input)."""
        d = float(self.input_div[i])
        return x if d == 1.0 else x / Tensor(np.float32(d))

    def timestep(self, i: int) -> Tensor:
        """The timestep Tensor (float32 scalar) the net receives at call i."""
        return Tensor(np.float32(self.timesteps[i]))


@dataclass(frozen=True)
class Sampler:
    """A sampler built from a scheduler config: schedule builder plus a pure, jit-able step.

    step(x, out, state, c, noise) -> (x_next, state): x the current sample, out the raw net output
    at call i, state a tuple of Tensors (from init_state), c the float32 coefficient row of call i,
    noise a standard-normal Tensor like x (None for deterministic samplers).
    make_schedule(n, start) builds the Schedule of n inference steps, keeping calls from `start`;
    make_img2img_schedule(n, strength), where set, replaces the generic img2img truncation.
    """

    name: str
    make_schedule: Callable[[int, int], Schedule]
    step: Callable
    init_state: Callable[[Tensor], tuple]
    num_train_timesteps: int = 1000
    order: int = 1
    stochastic: bool = False
    make_img2img_schedule: Optional[Callable[[int, float], Schedule]] = None

    def schedule(self, num_inference_steps: int) -> Schedule:
        """The Schedule for num_inference_steps (raises ValueError outside [1, num_train_timesteps])."""
        check_steps(num_inference_steps, self.num_train_timesteps)
        return self.make_schedule(num_inference_steps, 0)


def img2img_start(sampler: Sampler, num_inference_steps: int, strength: float) -> int:
    """First model call kept at `strength` (diffusers img2img get_timesteps: t_start * order)."""
    if not (isinstance(strength, (int, float)) and 0.0 < strength <= 1.0):
        raise ValueError(f"strength must be in (0, 1], got {strength!r}")
    check_steps(num_inference_steps, sampler.num_train_timesteps)
    init = min(int(num_inference_steps * strength), num_inference_steps)
    return max(num_inference_steps - init, 0) * sampler.order


def img2img_schedule(sampler: Sampler, num_inference_steps: int, strength: float) -> Schedule:
    """Schedule of the calls that remain at img2img `strength`, multistep state restarting there.

    Samplers whose diffusers pipeline folds strength into set_timesteps instead (LCM) provide their own rule.
    """
    start = img2img_start(sampler, num_inference_steps, strength)
    if sampler.make_img2img_schedule is not None:
        return sampler.make_img2img_schedule(num_inference_steps, strength)
    return sampler.make_schedule(num_inference_steps, start)


def add_noise(schedule: Schedule, x0: Float[Tensor, "b c h w"], noise: Float[Tensor, "b c h w"],
              i: int = 0) -> Float[Tensor, "b c h w"]:
    """Noise x0 to the level of call i (diffusers' scheduler.add_noise at schedule.timesteps[i])."""
    a, b = (Tensor(np.float32(v)) for v in schedule.noise_level[i])
    return a * x0 + b * noise
