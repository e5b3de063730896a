"""Variance-preserving discrete samplers: DDIM, DDPM, PNDM (PLMS), LCM.

Each factory takes the fields of the matching diffusers scheduler config (same names, same
defaults) and returns a `Sampler`. Coefficients are tabulated in numpy from the float32
alphas_cumprod; the step functions only mix Tensors with them.
"""
import numpy as np
from mindspore import ops

from . import schedules as S
from .core import Sampler, Schedule
from .denoiser import Columns, prediction_coefficients, threshold, to_x0_eps

_f32 = np.float32

# coefficient rows after the prediction columns
DDIM = Columns("sqrt_alpha_prev", "eps_coeff", "std")  # x_prev = sqrt_alpha_prev*x0 + eps_coeff*eps + std*z
DDPM = Columns("x0_coeff", "x_coeff", "std", "min_log", "max_log", "has_noise")  # eq. 7 mean and variance
PLMS_MIX = ("w_out", "w_e1", "w_e2", "w_e3", "w_acc")  # eps mixed from the output, eps history and RK sum
PNDM = Columns(*PLMS_MIX, "sample_coeff", "eps_coeff", "push", "from_saved", "save", "acc_keep", "acc_out")
LCM = Columns("c_out", "c_skip", "sqrt_alpha_prev", "sqrt_beta_prev")  # last call: 1 and 0 (no noise)


def _acp(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, rescale_betas_zero_snr):
    return S.alphas_cumprod(beta_schedule, num_train_timesteps, beta_start, beta_end, trained_betas,
                            rescale_betas_zero_snr)


def _vp_noise_level(acp_t):
    acp_t = np.asarray(acp_t, _f32)
    return np.stack([np.sqrt(acp_t), np.sqrt(_f32(1.0) - acp_t)], axis=-1)


def _check_pred(prediction_type, allowed, name):
    if prediction_type not in allowed:
        raise ValueError(f"{name}: unsupported prediction_type {prediction_type!r}; supported: {allowed}")


def _clip_x0(x0, clip_sample, clip_sample_range, thresholding, ratio, max_value):
    if thresholding:
        return threshold(x0, ratio, max_value)
    if clip_sample:
        return ops.clamp(x0, -clip_sample_range, clip_sample_range)
    return x0


def _no_state(x):
    return ()


def _schedule(ts, cols, coefs, needs_noise, noise_level, n, start, input_div=None, sigmas=None,
              init_noise_sigma=1.0):
    ts = np.asarray(ts)[start:]
    return Schedule(
        timesteps=ts, sigmas=None if sigmas is None else np.asarray(sigmas)[start:],
        init_noise_sigma=float(init_noise_sigma),
        input_div=np.ones(len(ts), _f32) if input_div is None else np.asarray(input_div, _f32)[start:],
        coefs=np.asarray(coefs, np.float64)[start:].astype(_f32),
        needs_noise=np.asarray(needs_noise, bool)[start:], noise_level=np.asarray(noise_level)[start:],
        num_inference_steps=n, columns=cols.names)


def ddim(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", trained_betas=None,
         clip_sample=True, set_alpha_to_one=True, steps_offset=0, prediction_type="epsilon", thresholding=False,
         dynamic_thresholding_ratio=0.995, clip_sample_range=1.0, sample_max_value=1.0, timestep_spacing="leading",
         rescale_betas_zero_snr=False, eta=0.0):
    """DDIM (Song et al. 2021, eq. 12), eta=0 deterministic, eta>0 adds sigma_t noise."""
    _check_pred(prediction_type, ("epsilon", "v_prediction", "sample"), "DDIMScheduler")
    S.spaced_timesteps(timestep_spacing, 1, num_train_timesteps, steps_offset)
    acp = _acp(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, rescale_betas_zero_snr)
    final = _f32(1.0) if set_alpha_to_one else acp[0]
    T = num_train_timesteps

    def make_schedule(n, start):
        ts = S.spaced_timesteps(timestep_spacing, n, T, steps_offset).astype(np.int64)
        prev = ts - T // n
        a = acp[ts].astype(np.float64)
        a_prev = np.where(prev >= 0, acp[np.maximum(prev, 0)], final).astype(np.float64)
        b, b_prev = 1 - a, 1 - a_prev
        std = eta * np.sqrt((b_prev / b) * (1 - a / a_prev))
        pred = prediction_coefficients(prediction_type, np.sqrt(a), np.sqrt(b))
        coefs = DDIM.table(pred, sqrt_alpha_prev=np.sqrt(a_prev), eps_coeff=np.sqrt(1 - a_prev - std**2), std=std)
        return _schedule(ts, DDIM, coefs, np.full(len(ts), eta > 0), _vp_noise_level(acp[ts]), n, start)

    def step(x, out, state, c, noise):
        x0, eps = to_x0_eps(out, x, c)
        x0 = _clip_x0(x0, clip_sample, clip_sample_range, thresholding, dynamic_thresholding_ratio, sample_max_value)
        x_prev = c[DDIM.sqrt_alpha_prev] * x0 + c[DDIM.eps_coeff] * eps
        if noise is not None:
            x_prev = x_prev + c[DDIM.std] * noise
        return x_prev, state

    return Sampler("ddim", make_schedule, step, _no_state, T, 1, eta > 0)


def ddpm(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", trained_betas=None,
         variance_type="fixed_small", clip_sample=True, prediction_type="epsilon", thresholding=False,
         dynamic_thresholding_ratio=0.995, clip_sample_range=1.0, sample_max_value=1.0, timestep_spacing="leading",
         steps_offset=0, rescale_betas_zero_snr=False):
    """DDPM ancestral sampling (Ho et al. 2020, eqs. 6-7; learned variances of Nichol & Dhariwal 2021)."""
    _check_pred(prediction_type, ("epsilon", "v_prediction", "sample"), "DDPMScheduler")
    kinds = ("fixed_small", "fixed_small_log", "fixed_large", "learned", "learned_range")
    if variance_type not in kinds:
        raise ValueError(f"DDPMScheduler: unsupported variance_type {variance_type!r}; supported: {kinds}")
    S.spaced_timesteps(timestep_spacing, 1, num_train_timesteps, steps_offset)
    acp = _acp(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, rescale_betas_zero_snr)
    T = num_train_timesteps
    learned = variance_type in ("learned", "learned_range")

    def make_schedule(n, start):
        ts = S.spaced_timesteps(timestep_spacing, n, T, steps_offset).astype(np.int64)
        prev = np.concatenate([ts[1:], [-1]])
        a = acp[ts].astype(_f32)
        a_prev = np.where(prev >= 0, acp[np.maximum(prev, 0)], _f32(1.0)).astype(_f32)
        cur_alpha = a / a_prev
        cur_beta = _f32(1.0) - cur_alpha
        var = np.maximum((_f32(1.0) - a_prev) / (_f32(1.0) - a) * cur_beta, _f32(1e-20))
        a64, ap64, ca64, cb64 = (v.astype(np.float64) for v in (a, a_prev, cur_alpha, cur_beta))
        c_x0 = np.sqrt(ap64) * cb64 / (1 - a64)
        c_x = np.sqrt(ca64) * (1 - ap64) / (1 - a64)
        if variance_type == "fixed_small":
            std = np.sqrt(var.astype(np.float64))
        elif variance_type == "fixed_small_log":
            std = np.exp(0.5 * np.log(var.astype(np.float64)))
        elif variance_type == "fixed_large":
            std = np.sqrt(cb64)
        else:
            std = np.zeros_like(a64)
        has_noise = ts > 0
        pred = prediction_coefficients(prediction_type, np.sqrt(a64), np.sqrt(1 - a64))
        coefs = DDPM.table(pred, x0_coeff=c_x0, x_coeff=c_x, std=std * has_noise,
                           min_log=np.log(var.astype(np.float64)), max_log=np.log(cb64), has_noise=has_noise)
        return _schedule(ts, DDPM, coefs, has_noise, _vp_noise_level(acp[ts]), n, start)

    def step(x, out, state, c, noise):
        ch = x.shape[1]
        pv = None
        if learned and out.shape[1] == 2 * ch:
            pv = out[:, ch:]
            out = out[:, :ch]
        x0, _ = to_x0_eps(out, x, c)
        x0 = _clip_x0(x0, clip_sample, clip_sample_range, thresholding, dynamic_thresholding_ratio, sample_max_value)
        x_prev = c[DDPM.x0_coeff] * x0 + c[DDPM.x_coeff] * x
        if variance_type == "learned":
            std = ops.sqrt(pv) * c[DDPM.has_noise]
        elif variance_type == "learned_range":
            frac = (pv + 1) / 2
            std = ops.exp(0.5 * (frac * c[DDPM.max_log] + (1 - frac) * c[DDPM.min_log])) * c[DDPM.has_noise]
        else:
            std = c[DDPM.std]
        return x_prev + std * noise, state

    return Sampler("ddpm", make_schedule, step, _no_state, T, 1, True)


_PLMS_WEIGHTS = ((1.0, 0.0, 0.0, 0.0), (0.5, 0.5, 0.0, 0.0), (1.5, -0.5, 0.0, 0.0),
                 (23 / 12, -16 / 12, 5 / 12, 0.0), (55 / 24, -59 / 24, 37 / 24, -9 / 24))


def pndm(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear", trained_betas=None,
         skip_prk_steps=False, set_alpha_to_one=False, prediction_type="epsilon", timestep_spacing="leading",
         steps_offset=0):
    """Pseudo numerical methods (Liu et al. 2022, PNDM): Runge-Kutta warm-up (eq. 13) then PLMS (eq. 12).

    skip_prk_steps=True (Stable Diffusion) starts PLMS at once with diffusers' repeated second timestep.
    """
    _check_pred(prediction_type, ("epsilon", "v_prediction"), "PNDMScheduler")
    S.spaced_timesteps(timestep_spacing, 1, num_train_timesteps, steps_offset)
    acp = _acp(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, False)
    final = _f32(1.0) if set_alpha_to_one else acp[0]
    T = num_train_timesteps

    def timesteps(n):
        base = S.spaced_timesteps(timestep_spacing, n, T, steps_offset)[::-1].astype(np.int64)
        if skip_prk_steps:
            return np.array([], np.int64), np.concatenate([base[:-1], base[-2:-1], base[-1:]])[::-1]
        if n < 4:
            raise ValueError(f"PNDMScheduler: the Runge-Kutta warm-up (skip_prk_steps=False) needs "
                             f"num_inference_steps >= 4, got {n}")
        prk = base[-4:].repeat(2) + np.tile(np.array([0, T // n // 2]), 4)
        return prk[:-1].repeat(2)[1:-1][::-1].copy(), base[:-3][::-1].copy()

    def row(t, t_prev, mix, acc, push, from_saved, save):
        a = np.float64(acp[t])
        a_prev = np.float64(acp[t_prev] if t_prev >= 0 else final)
        b, b_prev = 1 - a, 1 - a_prev
        denom = a * np.sqrt(b_prev) + np.sqrt(a * b * a_prev)
        pred = prediction_coefficients(prediction_type, np.sqrt(a), np.sqrt(b))
        return PNDM.table(pred, **dict(zip(PLMS_MIX, mix)), sample_coeff=np.sqrt(a_prev / a),
                          eps_coeff=(a_prev - a) / denom, push=push, from_saved=from_saved, save=save,
                          acc_keep=acc[0], acc_out=acc[1])

    def make_schedule(n, start):
        prk, plms = timesteps(n)
        ts = np.concatenate([prk, plms]).astype(np.int64)
        rows = []
        for k, t in enumerate(ts[start:]):
            if k < len(prk):
                t_prev = t - (0 if k % 2 else T // n // 2)
                phase = k % 4
                mix = (1.0, 0.0, 0.0, 0.0, 0.0) if phase < 3 else (1 / 6, 0.0, 0.0, 0.0, 1.0)
                acc = ((1.0, 1 / 6), (1.0, 1 / 3), (1.0, 1 / 3), (0.0, 0.0))[phase]
                rows.append(row(prk[k // 4 * 4], t_prev, mix, acc, float(phase == 0), float(phase != 0),
                                float(phase == 0)))
            elif skip_prk_steps:
                t_eff, t_prev = (t + T // n, t) if k == 1 else (t, t - T // n)
                w = _PLMS_WEIGHTS[min(k, 4)]
                rows.append(row(t_eff, t_prev, (*w, 0.0), (0.0, 0.0), float(k != 1), float(k == 1), float(k == 0)))
            else:
                rows.append(row(t, t - T // n, (*_PLMS_WEIGHTS[4], 0.0), (0.0, 0.0), 1.0, 0.0, 0.0))
        m = len(rows)
        return Schedule(timesteps=ts[start:], sigmas=None, init_noise_sigma=1.0, input_div=np.ones(m, _f32),
                        coefs=PNDM.stack(rows),
                        needs_noise=np.zeros(m, bool), noise_level=_vp_noise_level(acp[ts[start:]]),
                        num_inference_steps=n, columns=PNDM.names)

    def init_state(x):
        z = ops.zeros_like(x)
        return (z, z, z, z, z)

    def step(x, out, state, c, noise):
        e1, e2, e3, cur, acc = state
        mixed = c[PNDM.w_out] * out + c[PNDM.w_e1] * e1 + c[PNDM.w_e2] * e2 + c[PNDM.w_e3] * e3 + c[PNDM.w_acc] * acc
        saved = c[PNDM.from_saved]
        base = (1 - saved) * x + saved * cur
        _, eps = to_x0_eps(mixed, base, c)
        x_prev = c[PNDM.sample_coeff] * base - c[PNDM.eps_coeff] * eps
        push, save = c[PNDM.push], c[PNDM.save]
        keep = 1 - push
        new_state = (push * out + keep * e1, push * e1 + keep * e2, push * e2 + keep * e3,
                     save * x + (1 - save) * cur, c[PNDM.acc_keep] * acc + c[PNDM.acc_out] * out)
        return x_prev, new_state

    return Sampler("pndm", make_schedule, step, init_state, T, 1, False)


def lcm(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        trained_betas=None, original_inference_steps=50, clip_sample=False, clip_sample_range=1.0,
        set_alpha_to_one=True, steps_offset=0, prediction_type="epsilon", thresholding=False,
        dynamic_thresholding_ratio=0.995, sample_max_value=1.0, timestep_spacing="leading", timestep_scaling=10.0,
        rescale_betas_zero_snr=False):
    """Latent consistency model multistep sampling (Luo et al. 2023, Algorithm 3)."""
    _check_pred(prediction_type, ("epsilon", "v_prediction", "sample"), "LCMScheduler")
    acp = _acp(num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas, rescale_betas_zero_snr)
    final = _f32(1.0) if set_alpha_to_one else acp[0]
    T = num_train_timesteps
    if original_inference_steps > T:
        raise ValueError(f"LCMScheduler: original_inference_steps {original_inference_steps} > {T}")

    def make_schedule(n, start, strength=1.0):
        k = T // original_inference_steps
        origin = np.asarray(list(range(1, int(original_inference_steps * strength) + 1))) * k - 1
        if n > original_inference_steps or len(origin) // n < 1:
            raise ValueError(f"LCMScheduler: num_inference_steps {n} must be <= original_inference_steps "
                             f"{original_inference_steps} times strength {strength}")
        origin = origin[::-1].copy()
        idx = np.floor(np.linspace(0, len(origin), num=n, endpoint=False)).astype(np.int64)
        ts = origin[idx].astype(np.int64)
        prev = np.concatenate([ts[1:], ts[-1:]])
        a = acp[ts].astype(np.float64)
        a_prev = np.where(prev >= 0, acp[np.maximum(prev, 0)], final).astype(np.float64)
        st = ts.astype(_f32) * _f32(timestep_scaling)
        c_skip = (_f32(0.25) / (st * st + _f32(0.25))).astype(np.float64)
        c_out = (st / np.sqrt(st * st + _f32(0.25))).astype(np.float64)
        last = np.arange(n) == n - 1
        mix_a = np.where(last, 1.0, np.sqrt(a_prev))
        mix_b = np.where(last, 0.0, np.sqrt(1 - a_prev))
        pred = prediction_coefficients(prediction_type, np.sqrt(a), np.sqrt(1 - a))
        coefs = LCM.table(pred, c_out=c_out, c_skip=c_skip, sqrt_alpha_prev=mix_a, sqrt_beta_prev=mix_b)
        return _schedule(ts, LCM, coefs, ~last, _vp_noise_level(acp[ts]), n, start)

    def step(x, out, state, c, noise):
        x0, _ = to_x0_eps(out, x, c)
        x0 = _clip_x0(x0, clip_sample, clip_sample_range, thresholding, dynamic_thresholding_ratio, sample_max_value)
        denoised = c[LCM.c_out] * x0 + c[LCM.c_skip] * x
        return c[LCM.sqrt_alpha_prev] * denoised + c[LCM.sqrt_beta_prev] * noise, state

    def make_img2img_schedule(n, strength):
        return make_schedule(n, 0, strength)

    return Sampler("lcm", make_schedule, step, _no_state, T, 1, True, make_img2img_schedule)

