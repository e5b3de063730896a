"""Multistep exponential-integrator samplers: DPM-Solver++ (1/2/3M, SDE), UniPC."""
import numpy as np
from mindspore import ops

from . import schedules as S
from .core import Sampler, Schedule
from .denoiser import Columns, prediction_coefficients, threshold, to_x0_eps
from .k import sigma_kind

_f32 = np.float32

# DPM-Solver++: x_next = c_sample*x + c_x0*x0 + c_d1*(x0 - m1) + c_d2*(m1 - m2) + c_noise*z
DPM_SOLVER = Columns("c_sample", "c_x0", "c_d1", "c_noise", "c_d2")
# UniPC: UniC corrects x with the new x0 (where `corrector` = 1), then UniP predicts the next sample
UNIPC = Columns("corrector", "c_sample", "c_m1", "c_d1", "c_d1_t", "p_sample", "p_x0", "p_d1")


def vp_sigma_schedule(acp, n, T, spacing, steps_offset, kind, final_sigmas_type, lambda_min_clipped,
                      beta_schedule, unipc=False):
    """(int64 timesteps, float32 sigmas incl. final) of diffusers' DPMSolverMultistep (or UniPC) set_timesteps."""
    alpha_t, sigma_t = np.sqrt(acp), np.sqrt(_f32(1.0) - acp)
    lambda_t = np.log(alpha_t) - np.log(sigma_t)
    clipped = int(np.searchsorted(lambda_t[::-1], lambda_min_clipped))
    last = T - clipped
    if spacing == "linspace":
        ts = np.linspace(0, last - 1, n + 1).round()[::-1][:-1].copy().astype(np.int64)
    elif spacing == "leading":
        ratio = last // (n + 1)
        ts = (np.arange(0, n + 1) * ratio).round()[::-1][:-1].copy().astype(np.int64) + steps_offset
    elif spacing == "trailing":
        ts = np.arange(last, 0, -T / n).round().copy().astype(np.int64) - 1
    else:
        raise ValueError(f"unsupported timestep_spacing {spacing!r}: use leading, trailing or linspace")
    base = S.vp_sigmas(acp)
    log_sigmas = np.log(base)
    if kind is None:
        sig = np.interp(ts, np.arange(0, len(base)), base)
    else:
        lo, hi = float(base[0]), float(base[-1])
        sig = {"karras": S.karras_sigmas, "exponential": S.exponential_sigmas, "beta": S.beta_sigmas}[kind](lo, hi, n)
        ts = S.sigma_to_t(sig, log_sigmas)
        if kind == "karras" and (unipc or beta_schedule != "squaredcos_cap_v2"):
            ts = ts.round()
        else:
            # diffusers truncates; snap values within 1e-6 of an integer first, since an endpoint sigma
            # maps to exactly 999 (or 0) only up to the last-ulp rounding of torch's float32 sqrt
            near = np.abs(ts - np.round(ts)) < 1e-6
            ts = np.where(near, np.round(ts), ts)
        ts = ts.astype(np.int64)
    S.check_decreasing(sig)
    if final_sigmas_type == "sigma_min":
        final = sig[-1] if (unipc and kind is not None) else np.sqrt((_f32(1) - acp[0]) / acp[0])
    elif final_sigmas_type == "zero":
        final = 0.0
    else:
        raise ValueError(f"unsupported final_sigmas_type {final_sigmas_type!r}: use zero or sigma_min")
    return ts, np.concatenate([sig, [final]]).astype(_f32)


def alpha_sigma(sig):
    """(alpha_t, sigma_t) of the VP process at k-diffusion sigma, as float64 from float32 arithmetic."""
    sig = np.asarray(sig, _f32)
    alpha = _f32(1.0) / np.sqrt(sig * sig + _f32(1.0))
    return alpha.astype(np.float64), (sig * alpha).astype(np.float64)


def dpm_solver_multistep(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                         trained_betas=None, solver_order=2, prediction_type="epsilon", thresholding=False,
                         dynamic_thresholding_ratio=0.995, sample_max_value=1.0, algorithm_type="dpmsolver++",
                         solver_type="midpoint", lower_order_final=True, euler_at_final=False,
                         use_karras_sigmas=False, use_exponential_sigmas=False, use_beta_sigmas=False,
                         use_lu_lambdas=False, use_flow_sigmas=False, flow_shift=1.0, final_sigmas_type="zero",
                         lambda_min_clipped=-float("inf"), variance_type=None, timestep_spacing="linspace",
                         steps_offset=0, rescale_betas_zero_snr=False, use_dynamic_shifting=False,
                         time_shift_type="exponential"):
    """DPM-Solver++(2M/3M) and SDE-DPM-Solver++ (Lu et al. 2022, arXiv:2211.01095, Algorithm 2 and appendix)."""
    name = "DPMSolverMultistepScheduler"
    if algorithm_type not in ("dpmsolver++", "sde-dpmsolver++"):
        raise ValueError(f"{name}: unsupported algorithm_type {algorithm_type!r}; supported: dpmsolver++, "
                         "sde-dpmsolver++")
    if solver_order not in (1, 2, 3):
        raise ValueError(f"{name}: unsupported solver_order {solver_order!r}; supported: 1, 2, 3")
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"{name}: unsupported solver_type {solver_type!r}")
    for key, val in (("use_lu_lambdas", use_lu_lambdas), ("use_flow_sigmas", use_flow_sigmas),
                     ("use_dynamic_shifting", use_dynamic_shifting)):
        if val:
            raise ValueError(f"{name}: {key}=True is not implemented")
    if variance_type not in (None, "learned", "learned_range"):
        raise ValueError(f"{name}: unsupported variance_type {variance_type!r}")
    if prediction_type not in ("epsilon", "v_prediction", "sample"):
        raise ValueError(f"{name}: unsupported prediction_type {prediction_type!r}")
    kind = sigma_kind(use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas)
    acp = S.alphas_cumprod(beta_schedule, num_train_timesteps, beta_start, beta_end, trained_betas,
                           rescale_betas_zero_snr)
    if rescale_betas_zero_snr:
        acp[-1] = _f32(2.0**-24)
    T = num_train_timesteps
    sde = algorithm_type == "sde-dpmsolver++"

    def make_schedule(n, start):
        ts, sig = vp_sigma_schedule(acp, n, T, timestep_spacing, steps_offset, kind, final_sigmas_type,
                                    lambda_min_clipped, beta_schedule)
        m = len(ts)
        alpha, sigma = alpha_sigma(sig)
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = np.log(alpha) - np.log(sigma)
        rows = []
        for i in range(start, m):
            k = i - start
            final = i == m - 1 and (euler_at_final or (lower_order_final and m < 15) or final_sigmas_type == "zero")
            first = solver_order == 1 or k < 1 or final
            second = not first and (solver_order == 2 or k < 2 or (i == m - 2 and lower_order_final and m < 15))
            a_2 = 0.0
            with np.errstate(divide="ignore", invalid="ignore"):
                h = lam[i + 1] - lam[i]
                e = np.exp(-h)
                if sde:
                    a_x, a_d = sigma[i + 1] / sigma[i] * e, alpha[i + 1] * (1 - e * e)
                    a_n = sigma[i + 1] * np.sqrt(1 - e * e)
                else:
                    a_x, a_d, a_n = sigma[i + 1] / sigma[i], -alpha[i + 1] * (e - 1), 0.0
                a_1 = 0.0
                if not first and not second:
                    r0, r1 = (lam[i] - lam[i - 1]) / h, (lam[i - 1] - lam[i - 2]) / h
                    if sde:
                        c1 = alpha[i + 1] * ((1 - e * e) / (-2 * h) + 1)
                        c2 = alpha[i + 1] * ((1 - e * e - 2 * h) / (2 * h) ** 2 - 0.5)
                    else:
                        c1 = alpha[i + 1] * ((e - 1) / h + 1)
                        c2 = -alpha[i + 1] * ((e - 1 + h) / h**2 - 0.5)
                    a_1 = (c1 * (1 + r0 / (r0 + r1)) + c2 / (r0 + r1)) / r0
                    a_2 = -(c1 * r0 / (r0 + r1) + c2 / (r0 + r1)) / r1
                elif not first:
                    r0 = (lam[i] - lam[i - 1]) / h
                    if solver_type == "midpoint":
                        a_1 = 0.5 * a_d / r0
                    elif sde:
                        a_1 = alpha[i + 1] * ((1 - e * e) / (-2 * h) + 1) / r0
                    else:
                        a_1 = alpha[i + 1] * ((e - 1) / h + 1) / r0
            pred = prediction_coefficients(prediction_type, alpha[i], sigma[i])
            rows.append(DPM_SOLVER.table(pred, c_sample=a_x, c_x0=a_d, c_d1=a_1, c_noise=a_n, c_d2=a_2))
        needs = np.full(m - start, sde)
        level = np.stack([alpha, sigma], -1)[start:m].astype(_f32)
        return Schedule(timesteps=ts[start:], sigmas=sig, init_noise_sigma=1.0, input_div=np.ones(m - start, _f32),
                        coefs=DPM_SOLVER.stack(rows), needs_noise=needs, noise_level=level, num_inference_steps=n,
                        columns=DPM_SOLVER.names)

    def init_state(x):
        z = ops.zeros_like(x)
        return (z, z)

    def step(x, out, state, c, noise):
        m1, m2 = state
        if variance_type is not None:
            out = out[:, :x.shape[1]]
        x0, _ = to_x0_eps(out, x, c)
        if thresholding:
            x0 = threshold(x0, dynamic_thresholding_ratio, sample_max_value)
        x_next = c[DPM_SOLVER.c_sample] * x + c[DPM_SOLVER.c_x0] * x0 + c[DPM_SOLVER.c_d1] * (x0 - m1)
        if solver_order == 3:
            x_next = x_next + c[DPM_SOLVER.c_d2] * (m1 - m2)
        if noise is not None:
            x_next = x_next + c[DPM_SOLVER.c_noise] * noise
        return x_next, (x0, m1)

    return Sampler("dpm_solver_multistep", make_schedule, step, init_state, T, 1, sde)


def _unipc_rhos(order, h, rk, bh2):
    """(B_h, h_phi_1, rhos) of UniPC's corrector for `order` (Zhao et al. 2023, UniC with B(h) of bh1/bh2)."""
    hh = -h
    h_phi_1 = np.expm1(hh)
    b_h = np.expm1(hh) if bh2 else hh
    if order == 1:
        return b_h, h_phi_1, np.array([0.5])
    h_phi_k = h_phi_1 / hh - 1
    b1 = h_phi_k / b_h
    h_phi_k = h_phi_k / hh - 0.5
    b2 = h_phi_k * 2 / b_h
    return b_h, h_phi_1, np.linalg.solve(np.array([[1.0, 1.0], [rk, 1.0]]), np.array([b1, b2]))


def unipc_multistep(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                    trained_betas=None, solver_order=2, prediction_type="epsilon", thresholding=False,
                    dynamic_thresholding_ratio=0.995, sample_max_value=1.0, predict_x0=True, solver_type="bh2",
                    lower_order_final=True, disable_corrector=(), solver_p=None, use_karras_sigmas=False,
                    use_exponential_sigmas=False, use_beta_sigmas=False, use_flow_sigmas=False, flow_shift=1.0,
                    timestep_spacing="linspace", steps_offset=0, final_sigmas_type="zero",
                    rescale_betas_zero_snr=False, use_dynamic_shifting=False, time_shift_type="exponential"):
    """UniPC: UniP predictor + UniC corrector, data prediction, order <= 2 (Zhao et al. 2023, Algorithms 1-2)."""
    name = "UniPCMultistepScheduler"
    if solver_order not in (1, 2):
        raise ValueError(f"{name}: unsupported solver_order {solver_order!r}; supported: 1, 2")
    if solver_type not in ("bh1", "bh2"):
        raise ValueError(f"{name}: unsupported solver_type {solver_type!r}")
    for key, val in (("predict_x0=False", not predict_x0), ("solver_p", solver_p is not None),
                     ("use_flow_sigmas", use_flow_sigmas), ("use_dynamic_shifting", use_dynamic_shifting)):
        if val:
            raise ValueError(f"{name}: {key} is not implemented")
    if prediction_type not in ("epsilon", "v_prediction", "sample"):
        raise ValueError(f"{name}: unsupported prediction_type {prediction_type!r}")
    kind = sigma_kind(use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas)
    acp = S.alphas_cumprod(beta_schedule, num_train_timesteps, beta_start, beta_end, trained_betas,
                           rescale_betas_zero_snr)
    if rescale_betas_zero_snr:
        acp[-1] = _f32(2.0**-24)
    T = num_train_timesteps
    bh2 = solver_type == "bh2"
    disabled = set(disable_corrector or ())

    def make_schedule(n, start):
        ts, sig = vp_sigma_schedule(acp, n, T, timestep_spacing, steps_offset, kind, final_sigmas_type,
                                    -float("inf"), beta_schedule, unipc=True)
        m = len(ts)
        alpha, sigma = alpha_sigma(sig)
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = np.log(alpha) - np.log(sigma)

        def order_at(i):
            o = min(solver_order, m - i) if lower_order_final else solver_order
            return min(o, i - start + 1)

        rows = []
        for i in range(start, m):
            k = i - start
            with np.errstate(divide="ignore", invalid="ignore"):
                corr = dict(corrector=0.0, c_sample=0.0, c_m1=0.0, c_d1=0.0, c_d1_t=0.0)
                if k > 0 and (i - 1) not in disabled:
                    h = lam[i] - lam[i - 1]
                    oc = order_at(i - 1)
                    rk = (lam[i - 2] - lam[i - 1]) / h if oc == 2 else 1.0
                    b_h, h_phi_1, rhos = _unipc_rhos(oc, h, rk, bh2)
                    c_d1 = -alpha[i] * b_h * rhos[0] / rk if oc == 2 else 0.0
                    corr = dict(corrector=1.0, c_sample=sigma[i] / sigma[i - 1], c_m1=-alpha[i] * h_phi_1, c_d1=c_d1,
                                c_d1_t=-alpha[i] * b_h * rhos[-1])
                h = lam[i + 1] - lam[i]
                op = order_at(i)
                hh = -h
                h_phi_1 = np.expm1(hh)
                b_h = np.expm1(hh) if bh2 else hh
                c_p = 0.0
                if op == 2:
                    rk = (lam[i - 1] - lam[i]) / h
                    c_p = -alpha[i + 1] * b_h * 0.5 / rk
                p_sample, p_x0 = sigma[i + 1] / sigma[i], -alpha[i + 1] * h_phi_1
            rows.append(UNIPC.table(prediction_coefficients(prediction_type, alpha[i], sigma[i]), **corr,
                                    p_sample=p_sample, p_x0=p_x0, p_d1=c_p))
        level = np.stack([alpha, sigma], -1)[start:m].astype(_f32)
        return Schedule(timesteps=ts[start:], sigmas=sig, init_noise_sigma=1.0, input_div=np.ones(m - start, _f32),
                        coefs=UNIPC.stack(rows), needs_noise=np.zeros(m - start, bool), noise_level=level,
                        num_inference_steps=n, columns=UNIPC.names)

    def init_state(x):
        z = ops.zeros_like(x)
        return (z, z, z)

    def step(x, out, state, c, noise):
        m1, m2, x_last = state
        x0, _ = to_x0_eps(out, x, c)
        if thresholding:
            x0 = threshold(x0, dynamic_thresholding_ratio, sample_max_value)
        f = c[UNIPC.corrector]
        corrected = (c[UNIPC.c_sample] * x_last + c[UNIPC.c_m1] * m1 + c[UNIPC.c_d1] * (m2 - m1)
                     + c[UNIPC.c_d1_t] * (x0 - m1))
        x_c = f * corrected + (1 - f) * x
        x_next = c[UNIPC.p_sample] * x_c + c[UNIPC.p_x0] * x0 + c[UNIPC.p_d1] * (m1 - x0)
        return x_next, (x0, m1, x_c)

    return Sampler("unipc_multistep", make_schedule, step, init_state, T, 1, False)
