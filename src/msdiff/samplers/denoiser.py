"""Denoiser wrappers: prediction-type conversion, classifier-free guidance, x0 thresholding.

A net predicts eps, v or x0 ("epsilon", "v_prediction", "sample", "flow_prediction"). Every
sampler state x is a linear mix x = alpha*x0 + sigma*eps (alpha=1 for k-diffusion samplers,
alpha=1-sigma for flow matching), so the conversion is the same linear map for all samplers:
a per-step row (px, pm, pd, qx, qm, qd) with x0 = (px*x + pm*out)/pd and eps = (qx*x + qm*out)/qd,
tabulated once by `prediction_coefficients` and applied inside each step by `to_x0_eps`.
"""
from typing import Callable

import numpy as np
import mindspore as ms
from mindspore import Tensor, ops
from jaxtyping import Float

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample", "flow_prediction")


def prediction_coefficients(prediction_type: str, alpha, sigma) -> np.ndarray:
    """Rows (px, pm, pd, qx, qm, qd): x0 = (px*x + pm*out)/pd, eps = (qx*x + qm*out)/qd for x = alpha*x0 + sigma*eps.

    The numerator/denominator split reproduces diffusers' operation order (e.g. (x - sigma*eps)/alpha),
    which matters where x0 is a small difference of large terms.
    """
    a = np.asarray(alpha, np.float64)
    s = np.asarray(sigma, np.float64)
    one, zero = np.ones_like(a), np.zeros_like(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        if prediction_type == "epsilon":
            rows = [one, -s, a, zero, one, one]
        elif prediction_type == "sample":
            rows = [zero, one, one, one, -a, np.where(s > 0, s, 1.0)]
        elif prediction_type == "v_prediction":
            r2 = a * a + s * s
            r = np.sqrt(r2)
            rows = [a / r2, -s / r, one, s / r2, a / r, one]
        elif prediction_type == "flow_prediction":
            rows = [one, -s, one, one, a, one]
        else:
            raise ValueError(f"unsupported prediction_type {prediction_type!r}: use one of {PREDICTION_TYPES}")
    return np.stack(rows, axis=-1)


def to_x0_eps(out: Tensor, x: Tensor, k: Tensor):
    """(x0, eps) from the net output and sample with a `prediction_coefficients` row k."""
    return (k[0] * x + k[1] * out) / k[2], (k[3] * x + k[4] * out) / k[5]


def threshold(x0: Float[Tensor, "b ..."], ratio: float, max_value: float) -> Float[Tensor, "b ..."]:
    """Dynamic thresholding of x0 at the `ratio` quantile of |x0| (Saharia et al. 2022, Imagen)."""
    shape = x0.shape
    b = shape[0]
    n = 1
    for d in shape[1:]:
        n *= d
    flat = x0.astype(ms.float32).reshape(b, n)
    srt, _ = ops.sort(ops.abs(flat), axis=1)
    rank = float(np.float32(ratio) * np.float32(n - 1))
    lo = int(np.floor(rank))
    hi = min(lo + 1, n - 1)
    w = float(np.float32(rank) - np.float32(lo))
    v_lo = srt[:, lo:lo + 1]
    v_hi = srt[:, hi:hi + 1]
    if w < 0.5:
        q = v_lo + w * (v_hi - v_lo)
    else:
        q = v_hi - (v_hi - v_lo) * (1.0 - w)
    q = ops.clamp(q, 1.0, max_value)
    out = ops.minimum(ops.maximum(flat, -q), q) / q
    return out.reshape(shape).astype(x0.dtype)


def rescale_noise_cfg(guided: Float[Tensor, "b ..."], cond: Float[Tensor, "b ..."],
                      guidance_rescale: float) -> Float[Tensor, "b ..."]:
    """Rescale a guided prediction toward the std of the conditional one (Lin et al. 2023, sec. 3.4)."""
    axes = tuple(range(1, guided.ndim))
    std_cond = ops.std(cond, axis=axes, keepdims=True, ddof=1)
    std_cfg = ops.std(guided, axis=axes, keepdims=True, ddof=1)
    rescaled = guided * (std_cond / std_cfg)
    return guidance_rescale * rescaled + (1 - guidance_rescale) * guided


def combine_guidance(uncond: Tensor, cond: Tensor, guidance_scale: float, guidance_rescale: float = 0.0) -> Tensor:
    """Classifier-free guidance uncond + s*(cond - uncond) (Ho & Salimans 2022), optionally rescaled."""
    guided = uncond + guidance_scale * (cond - uncond)
    if guidance_rescale > 0:
        guided = rescale_noise_cfg(guided, cond, guidance_rescale)
    return guided


def guidance(model: Callable, guidance_scale: float, guidance_rescale: float = 0.0) -> Callable:
    """Wrap model(x2, t) -> out2, run on [x, x] (uncond first, as diffusers), into a guided model(x, t)."""
    def guided(x: Tensor, t: Tensor) -> Tensor:
        out = model(ops.concat([x, x], axis=0), t)
        uncond, cond = ops.split(out, x.shape[0], axis=0)
        return combine_guidance(uncond, cond, guidance_scale, guidance_rescale)

    return guided
