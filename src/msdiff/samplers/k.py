"""k-diffusion style samplers on sigma schedules: Euler, Euler ancestral, Heun, KDPM2 (+ancestral), LMS.

The sample lives in sigma space, x = x0 + sigma*eps; the net sees x / sqrt(sigma^2 + 1).
Two-stage methods (Heun, KDPM2) follow diffusers' call layout: 2n-1 net calls, alternating a
first-order call and a correction call; a flag column in the coefficient row selects the stage.
"""
import numpy as np
from mindspore import ops

from . import schedules as S
from .core import Sampler, Schedule
from .denoiser import Columns, prediction_coefficients, to_x0_eps

_f32 = np.float32

# coefficient rows after the prediction columns: sigma of the x0 -> derivative map, dt = sigma_next - sigma
EULER = Columns("sigma", "dt")
EULER_ANCESTRAL = Columns("sigma", "dt", "sigma_up")  # dt = sigma_down - sigma
TWO_STAGE = Columns("sigma", "dt", "first")  # first = 1 at a first-order call, 0 at its correction
TWO_STAGE_ANCESTRAL = Columns("sigma", "dt", "first", "sigma_up")
LMS = Columns("sigma", "w0", "w1", "w2", "w3")  # w_j: integral of the j-th Lagrange basis polynomial


def k_timesteps(spacing: str, n: int, T: int, steps_offset: int = 0) -> np.ndarray:
    """Float32 descending timesteps as diffusers' sigma-space schedulers space them (linspace not rounded)."""
    if spacing == "linspace":
        return np.linspace(0, T - 1, n, dtype=_f32)[::-1].copy()
    if spacing == "leading":
        ratio = T // n
        return (np.arange(0, n) * ratio).round()[::-1].copy().astype(_f32) + _f32(steps_offset)
    if spacing == "trailing":
        ratio = T / n
        return np.arange(T, 0, -ratio).round().copy().astype(_f32) - _f32(1)
    raise ValueError(f"unsupported timestep_spacing {spacing!r}: use leading, trailing or linspace")


def discrete_sigmas(acp, n, spacing, T, steps_offset=0, interpolation_type="linear", sigma_kind=None,
                    sigma_min=None, sigma_max=None):
    """(timesteps, sigmas without the final one) of diffusers' Euler/Heun/LMS/KDPM2 set_timesteps."""
    ts = k_timesteps(spacing, n, T, steps_offset)
    base = S.vp_sigmas(acp)
    log_sigmas = np.log(base)
    if interpolation_type == "linear":
        sig = np.interp(ts, np.arange(0, len(base)), base)
    elif interpolation_type == "log_linear":
        sig = S.exp_f32(S.linspace_f32(float(np.log(base[-1])), float(np.log(base[0])), n + 1))
    else:
        raise ValueError(f"unsupported interpolation_type {interpolation_type!r}: use linear or log_linear")
    if sigma_kind is not None:
        lo = sigma_min if sigma_min is not None else float(sig[-1])
        hi = sigma_max if sigma_max is not None else float(sig[0])
        sig = {"karras": S.karras_sigmas, "exponential": S.exponential_sigmas, "beta": S.beta_sigmas}[sigma_kind](
            lo, hi, n)
        ts = S.sigma_to_t(sig, log_sigmas)
    S.check_decreasing(sig)
    return ts, sig


def sigma_kind(use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False):
    """Which sigma spacing a config asks for (None = the interpolated training sigmas)."""
    flags = {"karras": use_karras_sigmas, "exponential": use_exponential_sigmas, "beta": use_beta_sigmas}
    on = [k for k, v in flags.items() if v]
    if len(on) > 1:
        raise ValueError(f"only one of use_karras_sigmas/use_exponential_sigmas/use_beta_sigmas may be set, got {on}")
    return on[0] if on else None


def _ve_noise_level(sig):
    return np.stack([np.ones_like(sig), sig], -1).astype(_f32)


def _input_div(sig):
    sig = np.asarray(sig, _f32)
    return np.sqrt(sig * sig + _f32(1.0))


def _init_sigma(sig, spacing):
    m = _f32(np.max(sig))
    return float(m if spacing in ("linspace", "trailing") else np.sqrt(m * m + _f32(1.0)))


def _ve_schedule(ts, sig_full, sig_call, cols, coefs, needs_noise, n, start, spacing, init=None):
    ts = np.asarray(ts)[start:]
    sig_call = np.asarray(sig_call, _f32)[start:]
    return Schedule(timesteps=ts, sigmas=sig_full, init_noise_sigma=init if init is not None else _init_sigma(
        sig_full, spacing), input_div=_input_div(sig_call), coefs=cols.stack(coefs)[start:],
        needs_noise=np.asarray(needs_noise, bool)[start:], noise_level=_ve_noise_level(sig_call), num_inference_steps=n,
        columns=cols.names)


def _no_state(x):
    return ()


def _acp(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, rescale_betas_zero_snr=False):
    acp = S.alphas_cumprod(beta_schedule, num_train_timesteps, beta_start, beta_end, trained_betas,
                           rescale_betas_zero_snr)
    if rescale_betas_zero_snr:
        acp[-1] = _f32(2.0**-24)
    return acp


def _check(prediction_type, allowed, name):
    if prediction_type not in allowed:
        raise ValueError(f"{name}: unsupported prediction_type {prediction_type!r}; supported: {allowed}")


def _ve_pred(prediction_type, sig):
    sig = np.asarray(sig, np.float64)
    return prediction_coefficients(prediction_type, np.ones_like(sig), sig)


def euler(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", trained_betas=None,
          prediction_type="epsilon", interpolation_type="linear", use_karras_sigmas=False,
          use_exponential_sigmas=False, use_beta_sigmas=False, sigma_min=None, sigma_max=None,
          timestep_spacing="linspace", timestep_type="discrete", steps_offset=0, rescale_betas_zero_snr=False,
          final_sigmas_type="zero"):
    """Euler method on the probability-flow ODE (Karras et al. 2022, Algorithm 2 without churn)."""
    _check(prediction_type, ("epsilon", "v_prediction", "sample"), "EulerDiscreteScheduler")
    kind = sigma_kind(use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas)
    if timestep_type not in ("discrete", "continuous"):
        raise ValueError(f"EulerDiscreteScheduler: unsupported timestep_type {timestep_type!r}")
    if final_sigmas_type not in ("zero", "sigma_min"):
        raise ValueError(f"EulerDiscreteScheduler: unsupported final_sigmas_type {final_sigmas_type!r}")
    acp = _acp(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, rescale_betas_zero_snr)
    k_timesteps(timestep_spacing, 1, num_train_timesteps, steps_offset)
    T = num_train_timesteps

    def make_schedule(n, start):
        ts, sig = discrete_sigmas(acp, n, timestep_spacing, T, steps_offset, interpolation_type, kind,
                                  sigma_min, sigma_max)
        last = _f32(0.0) if final_sigmas_type == "zero" else np.sqrt((_f32(1) - acp[0]) / acp[0])
        sig = np.concatenate([sig, [last]]).astype(_f32)
        if timestep_type == "continuous" and prediction_type == "v_prediction":
            ts = _f32(0.25) * S.log_f32(sig[:-1])
        ts = np.asarray(ts).astype(_f32)
        dt = sig[1:] - sig[:-1]
        coefs = EULER.table(_ve_pred(prediction_type, sig[:-1]), sigma=sig[:-1], dt=dt)
        return _ve_schedule(ts, sig, sig[:-1], EULER, coefs, np.zeros(n, bool), n, start, timestep_spacing)

    def step(x, out, state, c, noise):
        x0, _ = to_x0_eps(out, x, c)
        derivative = (x - x0) / c[EULER.sigma]
        return x + derivative * c[EULER.dt], state

    return Sampler("euler", make_schedule, step, _no_state, T, 1, False)


def euler_ancestral(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                    trained_betas=None, prediction_type="epsilon", timestep_spacing="linspace", steps_offset=0,
                    rescale_betas_zero_snr=False):
    """Euler ancestral: Euler to sigma_down plus noise of std sigma_up (k-diffusion sample_euler_ancestral, eta=1)."""
    _check(prediction_type, ("epsilon", "v_prediction"), "EulerAncestralDiscreteScheduler")
    acp = _acp(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, rescale_betas_zero_snr)
    k_timesteps(timestep_spacing, 1, num_train_timesteps, steps_offset)
    T = num_train_timesteps

    def make_schedule(n, start):
        ts, sig = discrete_sigmas(acp, n, timestep_spacing, T, steps_offset)
        sig = np.concatenate([sig, [0.0]]).astype(_f32)
        s_from, s_to = sig[:-1], sig[1:]
        up = np.sqrt(s_to**2 * (s_from**2 - s_to**2) / s_from**2)
        down = np.sqrt(s_to**2 - up**2)
        coefs = EULER_ANCESTRAL.table(_ve_pred(prediction_type, s_from), sigma=s_from, dt=down - s_from, sigma_up=up)
        return _ve_schedule(ts.astype(_f32), sig, s_from, EULER_ANCESTRAL, coefs, np.ones(n, bool), n, start,
                            timestep_spacing)

    def step(x, out, state, c, noise):
        x0, _ = to_x0_eps(out, x, c)
        derivative = (x - x0) / c[EULER_ANCESTRAL.sigma]
        return x + derivative * c[EULER_ANCESTRAL.dt] + noise * c[EULER_ANCESTRAL.sigma_up], state

    return Sampler("euler_ancestral", make_schedule, step, _no_state, T, 1, True)


def _two_stage_state(x):
    z = ops.zeros_like(x)
    return (z, z)


def heun(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear", trained_betas=None,
         prediction_type="epsilon", use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False,
         clip_sample=False, clip_sample_range=1.0, timestep_spacing="linspace", steps_offset=0):
    """Heun's second-order method (Karras et al. 2022, Algorithm 1), one net call per stage."""
    _check(prediction_type, ("epsilon", "v_prediction", "sample"), "HeunDiscreteScheduler")
    kind = sigma_kind(use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas)
    acp = _acp(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas)
    k_timesteps(timestep_spacing, 1, num_train_timesteps, steps_offset)
    T = num_train_timesteps

    def make_schedule(n, start):
        ts, sig = discrete_sigmas(acp, n, timestep_spacing, T, steps_offset, "linear", kind)
        sig = np.concatenate([sig, [0.0]]).astype(_f32)
        full = np.concatenate([sig[:1], np.repeat(sig[1:-1], 2), sig[-1:]])
        ts = np.asarray(ts)
        ts = np.concatenate([ts[:1], np.repeat(ts[1:], 2)]).astype(_f32)
        rows = []
        for j in range(len(ts)):
            first = j % 2 == 0
            s, s_next = (full[j], full[j + 1]) if first else (full[j - 1], full[j])
            s_pred = s if first else s_next
            rows.append(TWO_STAGE.table(_ve_pred(prediction_type, s_pred), sigma=s_pred, dt=s_next - s,
                                        first=float(first)))
        return _ve_schedule(ts, full, full[:-1], TWO_STAGE, rows, np.zeros(len(ts), bool), n, start, timestep_spacing)

    def step(x, out, state, c, noise):
        return _two_stage(x, out, state, c, TWO_STAGE, True, clip_sample_range if clip_sample else None)

    return Sampler("heun", make_schedule, step, _two_stage_state, T, 2, False)


def _lerp_half(a, b):
    """torch.lerp(a, b, 0.5) in float32: b - (b - a) * 0.5."""
    with np.errstate(invalid="ignore"):
        return (b - (b - a) * _f32(0.5)).astype(_f32)


def _repeat_inner(v):
    """[v0, v1, v1, ..., vn, vn, vn]: diffusers' layout of per-call sigmas for two-stage samplers."""
    return np.concatenate([v[:1], np.repeat(v[1:], 2), v[-1:]])


def _t_of_sigmas(sig32, log_sigmas):
    """diffusers' per-element _sigma_to_t on float32 sigma tensors (float32 log, float64 result)."""
    return np.array([S.sigma_to_t(np.float32(s), log_sigmas) for s in sig32])


def kdpm2(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear", trained_betas=None,
          use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False, prediction_type="epsilon",
          timestep_spacing="linspace", steps_offset=0):
    """DPM-Solver-2 in sigma space, midpoint in log-sigma (k-diffusion sample_dpm_2; Karras et al. 2022)."""
    return _kdpm2(False, num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
                  sigma_kind(use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas), prediction_type,
                  timestep_spacing, steps_offset)


def kdpm2_ancestral(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
                    trained_betas=None, use_karras_sigmas=False, use_exponential_sigmas=False,
                    use_beta_sigmas=False, prediction_type="epsilon", timestep_spacing="linspace", steps_offset=0):
    """Ancestral DPM-Solver-2 (Lu et al. 2022, arXiv:2206.00927; k-diffusion sample_dpm_2_ancestral, eta=1)."""
    return _kdpm2(True, num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas,
                  sigma_kind(use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas), prediction_type,
                  timestep_spacing, steps_offset)


def _kdpm2(ancestral, T, beta_start, beta_end, beta_schedule, trained_betas, kind, prediction_type, spacing,
           steps_offset):
    name = "KDPM2AncestralDiscreteScheduler" if ancestral else "KDPM2DiscreteScheduler"
    _check(prediction_type, ("epsilon", "v_prediction"), name)
    acp = _acp(T, beta_start, beta_end, beta_schedule, trained_betas)
    k_timesteps(spacing, 1, T, steps_offset)
    log_sigmas = np.log(S.vp_sigmas(acp))
    cols = TWO_STAGE_ANCESTRAL if ancestral else TWO_STAGE

    def make_schedule(n, start):
        ts, sig = discrete_sigmas(acp, n, spacing, T, steps_offset, "linear", kind)
        if kind == "karras":
            ts = np.asarray(ts).round()
        sig = np.concatenate([sig, [0.0]]).astype(_f32)
        with np.errstate(divide="ignore", invalid="ignore"):
            if ancestral:
                nxt = np.concatenate([sig[1:], [0.0]]).astype(_f32)
                up = np.sqrt(nxt**2 * (sig**2 - nxt**2) / sig**2)
                down = np.sqrt(nxt**2 - up**2)
                down[-1] = 0.0
                interp = S.exp_f32(_lerp_half(S.log_f32(sig), S.log_f32(down)))
                interp[-2:] = 0.0
                t_int = _t_of_sigmas(interp, log_sigmas)[:-2]
            else:
                interp = S.exp_f32(_lerp_half(S.log_f32(sig), S.log_f32(np.roll(sig, 1))))
                t_int = _t_of_sigmas(interp, log_sigmas)[1:-1]
        ts = np.asarray(ts)
        calls = np.concatenate([ts[:1], np.stack([t_int.astype(ts.dtype), ts[1:]], -1).reshape(-1)])
        F, FI = _repeat_inner(sig), _repeat_inner(interp)
        if ancestral:
            FU, FD = _repeat_inner(up), _repeat_inner(down)
        rows, div, noise = [], [], []
        for j in range(len(calls)):
            if j % 2 == 0:
                s, si = F[j], (FI[j] if ancestral else FI[j + 1])
                sigma, dt, first, up = s, si - s, 1.0, 0.0
            else:
                s, si = F[j - 1], (FI[j - 1] if ancestral else FI[j])
                sigma, first = si, 0.0
                dt, up = ((FD[j - 1] - s), FU[j - 1]) if ancestral else ((F[j] - s), 0.0)
            extra = {"sigma_up": up} if ancestral else {}
            rows.append(cols.table(_ve_pred(prediction_type, sigma), sigma=sigma, dt=dt, first=first, **extra))
            div.append(sigma)
            noise.append(ancestral and j % 2 == 1)
        init = _init_sigma(sig, spacing)
        return Schedule(timesteps=calls[start:], sigmas=F, init_noise_sigma=init, input_div=_input_div(div)[start:],
                        coefs=cols.stack(rows)[start:],
                        needs_noise=np.asarray(noise, bool)[start:],
                        noise_level=_ve_noise_level(np.asarray(div, _f32))[start:], num_inference_steps=n,
                        columns=cols.names)

    def step(x, out, state, c, noise):
        x_next, state = _two_stage(x, out, state, c, cols, False)
        if noise is not None:
            x_next = x_next + noise * c[TWO_STAGE_ANCESTRAL.sigma_up]
        return x_next, state

    return Sampler("kdpm2_ancestral" if ancestral else "kdpm2", make_schedule, step, _two_stage_state, T, 2,
                   ancestral)


def _two_stage(x, out, state, c, cols, average, clip_range=None):
    """Shared stage update: c[cols.first]=1 steps from x, else from the saved sample (Heun averages both slopes)."""
    d_prev, x_saved = state
    x0, _ = to_x0_eps(out, x, c)
    if clip_range is not None:
        x0 = ops.clamp(x0, -clip_range, clip_range)
    d = (x - x0) / c[cols.sigma]
    f = c[cols.first]
    second = (d_prev + d) / 2 if average else d
    derivative = f * d + (1 - f) * second
    base = f * x + (1 - f) * x_saved
    return base + derivative * c[cols.dt], (d, x)


def _lms_coefficient(sig, order, t, j):
    """Integral over [sig[t], sig[t+1]] of the Lagrange basis polynomial j on sig[t], sig[t-1], ... (LMS)."""
    poly = np.polynomial.Polynomial([1.0])
    for k in range(order):
        if k != j:
            poly *= np.polynomial.Polynomial([-float(sig[t - k]), 1.0]) / (float(sig[t - j]) - float(sig[t - k]))
    integral = poly.integ()
    return integral(float(sig[t + 1])) - integral(float(sig[t]))


def lms(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", trained_betas=None,
        use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False, prediction_type="epsilon",
        timestep_spacing="linspace", steps_offset=0, order=4):
    """Linear multistep (Adams-Bashforth with Lagrange weights) of order <= 4 in sigma (k-diffusion sample_lms)."""
    _check(prediction_type, ("epsilon", "v_prediction", "sample"), "LMSDiscreteScheduler")
    if order not in (1, 2, 3, 4):
        raise ValueError(f"LMSDiscreteScheduler: unsupported order {order!r}; supported: 1-4")
    kind = sigma_kind(use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas)
    acp = _acp(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas)
    k_timesteps(timestep_spacing, 1, num_train_timesteps, steps_offset)
    T = num_train_timesteps

    def make_schedule(n, start):
        ts, sig = discrete_sigmas(acp, n, timestep_spacing, T, steps_offset, "linear", kind)
        sig = np.concatenate([sig, [0.0]]).astype(_f32)
        rows = []
        for i in range(n):
            m = max(1, min(i - start + 1, order))
            w = [_lms_coefficient(sig, m, i, j) for j in range(m)] + [0.0] * (4 - m)
            rows.append(LMS.table(_ve_pred(prediction_type, sig[i]), sigma=sig[i], w0=w[0], w1=w[1], w2=w[2], w3=w[3]))
        return _ve_schedule(np.asarray(ts).astype(_f32), sig, sig[:-1], LMS, rows, np.zeros(n, bool), n, start,
                            timestep_spacing)

    def init_state(x):
        z = ops.zeros_like(x)
        return (z, z, z)

    def step(x, out, state, c, noise):
        d1, d2, d3 = state
        x0, _ = to_x0_eps(out, x, c)
        d = (x - x0) / c[LMS.sigma]
        x_next = x + (((c[LMS.w0] * d + c[LMS.w1] * d1) + c[LMS.w2] * d2) + c[LMS.w3] * d3)
        return x_next, (d, d1, d2)

    return Sampler("lms", make_schedule, step, init_state, T, 1, False)
