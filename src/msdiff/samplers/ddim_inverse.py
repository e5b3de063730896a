"""DDIM inversion (diffusers' DDIMInverseScheduler): the deterministic DDIM update run from x0 towards noise.

Timesteps ascend; at call i the net sees t_i while the sample sits at the level of the previous
timestep t_i - T/n (the first one at alpha 1, or alphas_cumprod[0] without set_alpha_to_one), and
the step moves it to t_i (Song et al. 2021, eq. 12 with eta 0, read backwards; Mokady et al. 2022).
"""
import numpy as np
from mindspore import ops

from . import schedules as S
from .core import Sampler, Schedule
from .denoiser import Columns, prediction_coefficients, to_x0_eps

_f32 = np.float32

# x_next = sqrt_alpha_next*x0 + sqrt_beta_next*eps, x0 and eps read at the current level
DDIM_INVERSE = Columns("sqrt_alpha_next", "sqrt_beta_next")
_SPACINGS = ("leading", "trailing")


def _no_state(x):
    return ()


def ddim_inverse(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                 trained_betas=None, clip_sample=True, set_alpha_to_one=True, steps_offset=0,
                 prediction_type="epsilon", clip_sample_range=1.0, timestep_spacing="leading",
                 rescale_betas_zero_snr=False):
    """DDIM inversion (Song et al. 2021, eq. 12 backwards with eta 0): x0 -> x_T along the ascending timesteps."""
    if prediction_type not in ("epsilon", "v_prediction", "sample"):
        raise ValueError(f"DDIMInverseScheduler: unsupported prediction_type {prediction_type!r}; "
                         "supported: ('epsilon', 'v_prediction', 'sample')")
    if timestep_spacing not in _SPACINGS:
        raise ValueError(f"DDIMInverseScheduler: timestep_spacing {timestep_spacing!r} is not supported; "
                         f"supported: {_SPACINGS}")
    acp = S.alphas_cumprod(beta_schedule, num_train_timesteps, beta_start, beta_end, trained_betas,
                           rescale_betas_zero_snr)
    initial = _f32(1.0) if set_alpha_to_one else acp[0]
    T = num_train_timesteps

    def make_schedule(n, start):
        ts = S.spaced_timesteps(timestep_spacing, n, T, steps_offset).astype(np.int64)[::-1].copy()
        cur = np.minimum(ts - T // n, T - 1)
        a = np.where(cur >= 0, acp[np.maximum(cur, 0)], initial).astype(_f32)
        a_next = acp[ts].astype(_f32)
        b, b_next = _f32(1.0) - a, _f32(1.0) - a_next  # float32 as diffusers' tensors
        pred = prediction_coefficients(prediction_type, np.sqrt(a), np.sqrt(b))
        coefs = DDIM_INVERSE.table(pred, sqrt_alpha_next=np.sqrt(a_next), sqrt_beta_next=np.sqrt(b_next))
        level = np.stack([np.sqrt(a), np.sqrt(b)], axis=-1)
        return Schedule(timesteps=ts[start:], sigmas=None, init_noise_sigma=1.0, input_div=np.ones(n - start, _f32),
                        coefs=coefs[start:].astype(_f32), needs_noise=np.zeros(n - start, bool),
                        noise_level=level[start:], num_inference_steps=n, columns=DDIM_INVERSE.names)

    def step(x, out, state, c, noise):
        x0, eps = to_x0_eps(out, x, c)
        if clip_sample:
            x0 = ops.clamp(x0, -clip_sample_range, clip_sample_range)
        return c[DDIM_INVERSE.sqrt_alpha_next] * x0 + c[DDIM_INVERSE.sqrt_beta_next] * eps, state

    return Sampler("ddim_inverse", make_schedule, step, _no_state, T, 1, False)
