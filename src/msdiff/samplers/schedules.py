"""Noise schedules as numpy functions, computed in the dtypes diffusers 0.35.2 uses.

diffusers builds betas and alphas_cumprod as torch float32 tensors (torch.linspace, torch.cumprod),
timesteps with numpy float64 then a cast, and sigmas from the float32 alphas_cumprod. The helpers
below reproduce those roundings so timesteps and sigmas agree to float32 precision.
"""
import math

import numpy as np

_f32 = np.float32


def linspace_f32(start: float, end: float, n: int) -> np.ndarray:
    """torch.linspace(start, end, n, dtype=float32) on CPU: two fused multiply-adds from both ends."""
    start, end = _f32(start), _f32(end)
    if n == 1:
        return np.array([start], _f32)
    step = np.float64(_f32((end - start) / _f32(n - 1)))
    idx = np.arange(n, dtype=np.float64)
    lo = np.float64(start) + step * idx
    hi = np.float64(end) - step * (n - 1 - idx)
    return np.where(idx < n // 2, lo, hi).astype(_f32)


def _cosine_betas(n: int, max_beta: float = 0.999) -> np.ndarray:
    """Betas of the squared-cosine alpha-bar schedule (Nichol & Dhariwal 2021, eq. 17)."""
    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)], dtype=_f32)


def betas(schedule: str, num_train_timesteps: int = 1000, beta_start: float = 0.0001,
          beta_end: float = 0.02, trained_betas=None) -> np.ndarray:
    """Float32 betas for "linear", "scaled_linear", "squaredcos_cap_v2" or explicit trained betas."""
    if trained_betas is not None:
        return np.asarray(trained_betas, dtype=_f32)
    if schedule == "linear":
        return linspace_f32(beta_start, beta_end, num_train_timesteps)
    if schedule == "scaled_linear":
        b = linspace_f32(beta_start**0.5, beta_end**0.5, num_train_timesteps)
        return b * b
    if schedule == "squaredcos_cap_v2":
        return _cosine_betas(num_train_timesteps)
    raise ValueError(f"unsupported beta_schedule {schedule!r}: use linear, scaled_linear or squaredcos_cap_v2")


def cumprod_f32(x: np.ndarray) -> np.ndarray:
    """torch.cumprod of a float32 tensor on CPU (accumulates in float64, stores float32)."""
    return np.cumprod(x.astype(np.float64)).astype(_f32)


def rescale_zero_terminal_snr(b: np.ndarray) -> np.ndarray:
    """Rescale float32 betas to zero terminal SNR (Lin et al. 2023, Algorithm 1)."""
    abar_sqrt = np.sqrt(cumprod_f32(_f32(1.0) - b))
    first, last = abar_sqrt[0], abar_sqrt[-1]
    abar_sqrt = (abar_sqrt - last) * _f32(first / (first - last))
    abar = abar_sqrt * abar_sqrt
    alphas = np.concatenate([abar[:1], abar[1:] / abar[:-1]])
    return (_f32(1.0) - alphas).astype(_f32)


def alphas_cumprod(schedule: str = "linear", num_train_timesteps: int = 1000, beta_start: float = 0.0001,
                   beta_end: float = 0.02, trained_betas=None, rescale_betas_zero_snr: bool = False) -> np.ndarray:
    """Float32 cumulative product of alphas, exactly as diffusers' scheduler constructors build it."""
    b = betas(schedule, num_train_timesteps, beta_start, beta_end, trained_betas)
    if rescale_betas_zero_snr:
        b = rescale_zero_terminal_snr(b)
    return cumprod_f32(_f32(1.0) - b)


def vp_sigmas(acp: np.ndarray) -> np.ndarray:
    """Float32 k-diffusion sigmas sqrt((1 - abar) / abar) for every training timestep."""
    return np.sqrt((_f32(1.0) - acp) / acp)


def spaced_timesteps(spacing: str, n: int, num_train_timesteps: int, steps_offset: int = 0) -> np.ndarray:
    """Float64 descending timesteps for "leading", "trailing" or "linspace" spacing (not yet cast)."""
    if spacing == "linspace":
        return np.linspace(0, num_train_timesteps - 1, n).round()[::-1].copy()
    if spacing == "leading":
        ratio = num_train_timesteps // n
        return (np.arange(0, n) * ratio).round()[::-1].copy() + steps_offset
    if spacing == "trailing":
        ratio = num_train_timesteps / n
        return np.round(np.arange(num_train_timesteps, 0, -ratio)) - 1
    raise ValueError(f"unsupported timestep_spacing {spacing!r}: use leading, trailing or linspace")


def check_steps(n: int, num_train_timesteps: int) -> None:
    """Raise ValueError unless 1 <= n <= num_train_timesteps."""
    if not isinstance(n, (int, np.integer)) or n < 1 or n > num_train_timesteps:
        raise ValueError(f"num_inference_steps must be an integer in [1, {num_train_timesteps}], got {n!r}")


def check_decreasing(sigmas: np.ndarray) -> None:
    """Raise ValueError unless the sigmas the steps start from are strictly decreasing and positive."""
    s = np.asarray(sigmas, dtype=np.float64)
    if s.ndim != 1 or s.size < 1 or not np.all(np.diff(s) < 0) or not np.all(s > 0):
        raise ValueError(f"sigma schedule must be strictly decreasing, got {s.tolist()}")


def sigma_to_t(sigma, log_sigmas: np.ndarray) -> np.ndarray:
    """Fractional training timestep of sigma by linear interpolation in log-sigma (k-diffusion)."""
    sigma = np.asarray(sigma)
    log_sigma = np.log(np.maximum(sigma, 1e-10))
    dists = log_sigma - log_sigmas[:, np.newaxis]
    low = np.cumsum((dists >= 0), axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    lo, hi = log_sigmas[low], log_sigmas[low + 1]
    w = np.clip((lo - log_sigma) / (lo - hi), 0, 1)
    return ((1 - w) * low + w * (low + 1)).reshape(sigma.shape)


def karras_sigmas(sigma_min: float, sigma_max: float, n: int, rho: float = 7.0) -> np.ndarray:
    """Float64 sigmas of Karras et al. 2022 (eq. 5), from sigma_max down to sigma_min."""
    ramp = np.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def exponential_sigmas(sigma_min: float, sigma_max: float, n: int) -> np.ndarray:
    """Float64 sigmas evenly spaced in log(sigma)."""
    return np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), n))


def beta_sigmas(sigma_min: float, sigma_max: float, n: int, alpha: float = 0.6, beta: float = 0.6) -> np.ndarray:
    """Float64 sigmas at Beta(alpha, beta) quantiles (Lee et al. 2024, "Beta sampling is all you need")."""
    q = [_beta_ppf(p, alpha, beta) for p in 1 - np.linspace(0, 1, n)]
    return np.array([sigma_min + v * (sigma_max - sigma_min) for v in q])


def _betainc(x: float, a: float, b: float) -> float:
    """Regularized incomplete beta function I_x(a, b) by Lentz's continued fraction."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(1.0 - x, b, a)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(1.0 - c * d) < 1e-16:
            break
    return front * (f - 1.0)


def _beta_ppf(p: float, a: float, b: float) -> float:
    """Inverse of the regularized incomplete beta function by bisection to double precision."""
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _betainc(mid, a, b) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-17:
            break
    return 0.5 * (lo + hi)


def log_f32(x) -> np.ndarray:
    """Float32 log as torch computes it on CPU (correctly rounded, unlike numpy's float32 SIMD log)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.asarray(x, np.float32).astype(np.float64)).astype(np.float32)


def exp_f32(x) -> np.ndarray:
    """Float32 exp as torch computes it on CPU (correctly rounded, unlike numpy's float32 SIMD exp)."""
    return np.exp(np.asarray(x, np.float32).astype(np.float64)).astype(np.float32)


def flow_shift(sigmas: np.ndarray, shift: float) -> np.ndarray:
    """Shifted flow-matching sigmas shift*s / (1 + (shift - 1)*s) (Esser et al. 2024, SD3)."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)
