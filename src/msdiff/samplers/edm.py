"""Continuous-sigma samplers: EDM Euler, consistency-model multistep sampling, flow-matching Euler."""
import math

import numpy as np
from mindspore import ops

from . import schedules as S
from .core import Sampler, Schedule
from .denoiser import Columns, to_x0_eps, x0_coefficients
from .k import EULER, sigma_kind

_f32 = np.float32

# coefficient rows after the prediction columns (x0 = c_skip*x + c_out*out); EDM Euler uses k.EULER
CONSISTENCY = Columns("s_noise", "std")  # x = denoised + (z * s_noise) * std
FLOW_EULER = Columns("dt")  # x = x + dt * v; the prediction columns are unused (the net predicts v)


def _no_state(x):
    return ()


def _euler_step(x, out, state, c, noise):
    x0, _ = to_x0_eps(out, x, c)
    derivative = (x - x0) / c[EULER.sigma]
    return x + derivative * c[EULER.dt], state


def edm_euler(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5, sigma_schedule="karras", num_train_timesteps=1000,
              prediction_type="epsilon", rho=7.0, final_sigmas_type="zero"):
    """Euler on the EDM ODE with EDM preconditioning (Karras et al. 2022, Algorithm 1 first order)."""
    name = "EDMEulerScheduler"
    if sigma_schedule not in ("karras", "exponential"):
        raise ValueError(f"{name}: unsupported sigma_schedule {sigma_schedule!r}")
    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"{name}: unsupported prediction_type {prediction_type!r}")
    if final_sigmas_type not in ("zero", "sigma_min"):
        raise ValueError(f"{name}: unsupported final_sigmas_type {final_sigmas_type!r}")
    sd = _f32(sigma_data)

    def make_schedule(n, start):
        if sigma_schedule == "karras":
            ramp = np.linspace(0, 1, n)
            lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
            sig = ((hi + ramp * (lo - hi)) ** rho).astype(_f32)
        else:
            sig = S.exp_f32(S.linspace_f32(math.log(sigma_min), math.log(sigma_max), n))[::-1].copy()
        S.check_decreasing(sig)
        ts = (_f32(0.25) * S.log_f32(sig)).astype(_f32)
        full = np.concatenate([sig, [sig[-1] if final_sigmas_type == "sigma_min" else 0.0]]).astype(_f32)
        d2 = sig * sig + sd * sd
        c_skip = sd * sd / d2
        c_out = sig * sd / np.sqrt(d2) * (1 if prediction_type == "epsilon" else -1)
        coefs = EULER.table(x0_coefficients(c_skip, c_out), sigma=sig, dt=full[1:] - full[:-1])
        return Schedule(timesteps=ts[start:], sigmas=full, init_noise_sigma=(sigma_max**2 + 1) ** 0.5,
                        input_div=np.sqrt(d2)[start:], coefs=coefs[start:].astype(_f32),
                        needs_noise=np.zeros(n - start, bool),
                        noise_level=np.stack([np.ones_like(sig), sig], -1)[start:], num_inference_steps=n,
                        columns=EULER.names)

    def step(x, out, state, c, noise):
        return _euler_step(x, out, state, c, noise)

    return Sampler("edm_euler", make_schedule, step, _no_state, num_train_timesteps, 1, False)


def consistency(num_train_timesteps=40, sigma_min=0.002, sigma_max=80.0, sigma_data=0.5, s_noise=1.0, rho=7.0,
                clip_denoised=True, timesteps=None):
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1).

    `timesteps` (optional) are explicit descending training timesteps in [0, num_train_timesteps), as diffusers'
    set_timesteps(timesteps=...); the schedule then has exactly len(timesteps) steps.
    """
    T = num_train_timesteps
    sd = _f32(sigma_data)
    custom = None if timesteps is None else _custom_timesteps(timesteps, T)

    def make_schedule(n, start):
        if custom is not None and n != len(custom):
            raise ValueError(f"this consistency sampler has {len(custom)} custom timesteps; asked for {n} steps")
        ts = custom if custom is not None else (np.arange(0, n) * (T // n)).round()[::-1].copy().astype(np.int64)
        ramp = ts[::-1].copy() / (T - 1)
        lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
        sig64 = (hi + ramp * (lo - hi)) ** rho
        timesteps = 1000 * 0.25 * np.log(sig64 + 1e-44)
        full = np.concatenate([sig64, [sigma_min]]).astype(_f32)
        sig = full[:-1]
        d2 = sig * sig + sd * sd
        shifted = sig - _f32(sigma_min)
        c_skip = sd * sd / (shifted * shifted + sd * sd)
        c_out = shifted * sd / np.sqrt(d2)
        nxt = np.array([full[i + 1] if i + 1 < T else full[-1] for i in range(n)], _f32)
        hat = np.clip(nxt, _f32(sigma_min), _f32(sigma_max))
        std = np.sqrt(hat * hat - _f32(sigma_min**2))
        coefs = CONSISTENCY.table(x0_coefficients(c_skip, c_out), s_noise=s_noise, std=std)
        return Schedule(timesteps=timesteps[start:], sigmas=full, init_noise_sigma=float(sigma_max),
                        input_div=np.sqrt(d2)[start:], coefs=coefs[start:].astype(_f32),
                        needs_noise=np.full(n - start, n > 1),
                        noise_level=np.stack([np.ones_like(sig), sig], -1)[start:], num_inference_steps=n,
                        columns=CONSISTENCY.names)

    def step(x, out, state, c, noise):
        denoised, _ = to_x0_eps(out, x, c)
        if clip_denoised:
            denoised = ops.clamp(denoised, -1.0, 1.0)
        return denoised + (noise * c[CONSISTENCY.s_noise]) * c[CONSISTENCY.std], state

    return Sampler("consistency", make_schedule, step, _no_state, T, 1, True)


def _custom_timesteps(timesteps, num_train_timesteps):
    """Explicit consistency timesteps as int64, checked like diffusers (non-empty, descending, < num_train_timesteps)."""
    ts = np.asarray(list(timesteps))
    if ts.ndim != 1 or ts.size == 0 or not np.issubdtype(ts.dtype, np.integer):
        raise ValueError(f"`timesteps` must be a non-empty sequence of integers; got {list(timesteps)}")
    if np.any(ts[1:] >= ts[:-1]):
        raise ValueError(f"`timesteps` must be in descending order; got {ts.tolist()}")
    if ts[0] >= num_train_timesteps or ts[-1] < 0:
        raise ValueError(f"`timesteps` must lie in [0, num_train_timesteps={num_train_timesteps}); got {ts.tolist()}")
    return ts.astype(np.int64)


def flow_match_euler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False, base_shift=0.5,
                     max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096, invert_sigmas=False,
                     shift_terminal=None, use_karras_sigmas=False, use_exponential_sigmas=False,
                     use_beta_sigmas=False, time_shift_type="exponential", stochastic_sampling=False, mu=None):
    """Euler on the rectified-flow ODE dx/dsigma = v (Esser et al. 2024, SD3); mu for dynamic shifting.

    The net's output is the velocity itself (the only prediction this scheduler supports), used as is.
    """
    name = "FlowMatchEulerDiscreteScheduler"
    for key, val in (("invert_sigmas", invert_sigmas), ("stochastic_sampling", stochastic_sampling)):
        if val:
            raise ValueError(f"{name}: {key}=True is not implemented")
    if time_shift_type not in ("exponential", "linear"):
        raise ValueError(f"{name}: unsupported time_shift_type {time_shift_type!r}")
    if use_dynamic_shifting and mu is None:
        raise ValueError(f"{name}: use_dynamic_shifting=True needs mu (pass from_config(config, mu=...))")
    kind = sigma_kind(use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas)
    T = num_train_timesteps
    base = np.linspace(1, T, T, dtype=_f32)[::-1].copy() / _f32(T)
    if not use_dynamic_shifting:
        s = _f32(shift)
        base = s * base / (_f32(1) + (s - _f32(1)) * base)
    smin, smax = float(base[-1]), float(base[0])

    def make_schedule(n, start):
        sig = np.linspace(smax * T, smin * T, n) / T
        if use_dynamic_shifting:
            e = math.exp(mu) if time_shift_type == "exponential" else mu
            sig = e / (e + (1 / sig - 1) ** 1.0)
        else:
            sig = S.flow_shift(sig, shift)
        if shift_terminal:
            one_minus = 1 - sig
            with np.errstate(divide="ignore", invalid="ignore"):
                sig = 1 - one_minus / (one_minus[-1] / (1 - shift_terminal))
        if kind is not None:
            sig = {"karras": S.karras_sigmas, "exponential": S.exponential_sigmas, "beta": S.beta_sigmas}[kind](
                float(sig[-1]), float(sig[0]), n)
        sig = sig.astype(_f32)
        S.check_decreasing(sig)
        ts = sig * _f32(T)
        full = np.concatenate([sig, [0.0]]).astype(_f32)
        coefs = FLOW_EULER.table(x0_coefficients(np.zeros(n), np.zeros(n)), dt=full[1:] - full[:-1])
        return Schedule(timesteps=ts[start:], sigmas=full, init_noise_sigma=1.0, input_div=np.ones(n - start, _f32),
                        coefs=coefs[start:].astype(_f32), needs_noise=np.zeros(n - start, bool),
                        noise_level=np.stack([_f32(1) - sig, sig], -1)[start:], num_inference_steps=n,
                        columns=FLOW_EULER.names)

    def step(x, out, state, c, noise):
        return x + c[FLOW_EULER.dt] * out, state

    return Sampler("flow_match_euler", make_schedule, step, _no_state, T, 1, False)
