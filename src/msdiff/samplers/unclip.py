"""UnCLIPScheduler (diffusers' scheduling_unclip.py, the Karlo / Kandinsky prior and unCLIP decoder sampler).

DDPM ancestral steps (Ho et al. 2020, eq. 7) between Karlo's timesteps round(i * (T - 1) / (n - 1)), each step to
the pipeline's next timestep (the last one to t - 1 = -1, where alpha is 1 and no noise is added). Variance
"fixed_small_log" (the posterior variance, log-clamped) or "learned_range" (Nichol & Dhariwal 2021, eq. 15: the
net's second half interpolates log beta and log posterior variance). Coefficients follow diffusers' float32 order:
between consecutive training steps beta is betas[t], otherwise 1 - abar_t / abar_prev.
"""
import numpy as np
from mindspore import ops

from . import schedules as S
from .core import Sampler
from .denoiser import Columns, prediction_coefficients, to_x0_eps
from .vp import _no_state, _schedule, _vp_noise_level

_f32 = np.float32

# x_prev = x0_coeff*x0 + x_coeff*x + std*z; learned_range: std = exp((frac*max_log + (1-frac)*min_log)/2)*has_noise
UNCLIP = Columns("x0_coeff", "x_coeff", "std", "min_log", "max_log", "has_noise")
_VARIANCES = ("fixed_small_log", "learned_range")


def karlo_timesteps(n: int, num_train_timesteps: int) -> np.ndarray:
    """Descending int64 round(i * (T - 1) / (n - 1)), i < n; n >= 2 (diffusers divides by n - 1)."""
    if n < 2:
        raise ValueError(f"UnCLIPScheduler: num_inference_steps must be at least 2, got {n}")
    ratio = (num_train_timesteps - 1) / (n - 1)
    return (np.arange(0, n) * ratio).round()[::-1].copy().astype(np.int64)


def unclip(num_train_timesteps=1000, variance_type="fixed_small_log", clip_sample=True, clip_sample_range=1.0,
           prediction_type="epsilon", beta_schedule="squaredcos_cap_v2"):
    """UnCLIP's DDPM sampler (Ramesh et al. 2022 / Karlo): eq. 7 posterior mean, fixed-small-log or learned-range
    variance, x0 clipped to +-clip_sample_range."""
    if beta_schedule != "squaredcos_cap_v2":
        raise ValueError(f"UnCLIPScheduler: beta_schedule must be 'squaredcos_cap_v2', got {beta_schedule!r}")
    if prediction_type not in ("epsilon", "sample"):
        raise ValueError(f"UnCLIPScheduler: unsupported prediction_type {prediction_type!r}; "
                         "supported: ('epsilon', 'sample')")
    if variance_type not in _VARIANCES:
        raise ValueError(f"UnCLIPScheduler: unsupported variance_type {variance_type!r}; supported: {_VARIANCES}")
    T = num_train_timesteps
    betas = S.betas("squaredcos_cap_v2", T)
    alphas = _f32(1.0) - betas
    acp = S.cumprod_f32(alphas)
    learned = variance_type == "learned_range"

    def make_schedule(n, start):
        ts = karlo_timesteps(n, T)
        prev = np.concatenate([ts[1:], ts[-1:] - 1])
        a = acp[ts]
        a_prev = np.where(prev >= 0, acp[np.maximum(prev, 0)], _f32(1.0)).astype(_f32)
        b_t, b_prev = _f32(1.0) - a, _f32(1.0) - a_prev
        consecutive = prev == ts - 1
        beta = np.where(consecutive, betas[ts], _f32(1.0) - a / a_prev).astype(_f32)
        alpha = np.where(consecutive, alphas[ts], _f32(1.0) - beta).astype(_f32)
        var = (b_prev / b_t * beta).astype(_f32)
        has_noise = ts > 0
        with np.errstate(divide="ignore"):
            min_log = np.log(var.astype(np.float64))
            std = np.exp(0.5 * np.log(np.maximum(var, _f32(1e-20)).astype(np.float64)))
        pred = prediction_coefficients(prediction_type, np.sqrt(a.astype(np.float64)),
                                       np.sqrt(b_t.astype(np.float64)))
        coefs = UNCLIP.table(pred, x0_coeff=np.sqrt(a_prev.astype(np.float64)) * beta / b_t,
                             x_coeff=np.sqrt(alpha.astype(np.float64)) * b_prev / b_t, std=std * has_noise,
                             min_log=np.where(has_noise, min_log, 0.0), max_log=np.log(beta.astype(np.float64)),
                             has_noise=has_noise)
        return _schedule(ts, UNCLIP, coefs, has_noise, _vp_noise_level(acp[ts]), n, start)

    def step(x, out, state, c, noise):
        ch = x.shape[1]
        pv = None
        if learned:
            if out.shape[1] != 2 * ch:
                raise ValueError(f"UnCLIPScheduler: variance_type 'learned_range' needs the net's predicted "
                                 f"variance: {2 * ch} output channels for {ch}, got {out.shape[1]}")
            pv = out[:, ch:]
            out = out[:, :ch]
        x0, _ = to_x0_eps(out, x, c)
        if clip_sample:
            x0 = ops.clamp(x0, -clip_sample_range, clip_sample_range)
        x_prev = c[UNCLIP.x0_coeff] * x0 + c[UNCLIP.x_coeff] * x
        if pv is not None:
            frac = (pv + 1) / 2
            std = ops.exp(0.5 * (frac * c[UNCLIP.max_log] + (1 - frac) * c[UNCLIP.min_log])) * c[UNCLIP.has_noise]
        else:
            std = c[UNCLIP.std]
        return x_prev + std * noise, state

    return Sampler("unclip", make_schedule, step, _no_state, T, 1, True)
