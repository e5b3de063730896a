"""Denoiser wrappers: prediction-type conversion, classifier-free guidance, x0 thresholding.

A net predicts eps, v or x0 ("epsilon", "v_prediction", "sample", "flow_prediction"). Every
sampler state x is a linear mix x = alpha*x0 + sigma*eps (alpha=1 for k-diffusion samplers,
alpha=1-sigma for flow matching), so the conversion is the same linear map for all samplers:
a per-step row (px, pm, pd, qx, qm, qd) with x0 = (px*x + pm*out)/pd and eps = (qx*x + qm*out)/qd,
tabulated once by `prediction_coefficients` and applied inside each step by `to_x0_eps`.

Every coefficient row starts with these six columns; a sampler names the columns it adds with
`Columns`, builds its table by name and reads `c[COLS.dt]` in its step (the indices are Python ints,
so the row stays one float32 Tensor input and one compiled graph serves every call).
"""

import numpy as np
import mindspore as ms
from mindspore import Tensor, ops
from jaxtyping import Float

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample", "flow_prediction")
PREDICTION_COLUMNS = ("px", "pm", "pd", "qx", "qm", "qd")


class Columns:
    """Named columns of a sampler's coefficient row: the six prediction columns, then the sampler's own.

    `cols.dt` is the index of column "dt"; `cols.table(pred, dt=...)` builds rows by name.
    """

    def __init__(self, *own: str):
        names = PREDICTION_COLUMNS + own
        bad = [n for n in own if not n.isidentifier() or n.startswith("_") or hasattr(Columns, n)]
        if bad or len(set(names)) != len(names):
            raise ValueError(f"coefficient column names must be distinct identifiers, got {names}")
        self.names = names
        self.own = own
        for i, name in enumerate(names):
            setattr(self, name, i)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"Columns{self.own}"

    def table(self, pred, **columns) -> np.ndarray:
        """Float64 rows (..., len(self)) from prediction rows (..., 6) and a value or array per own column."""
        if set(columns) != set(self.own):
            missing, unknown = sorted(set(self.own) - set(columns)), sorted(set(columns) - set(self.own))
            raise ValueError(f"{self!r}.table: missing columns {missing}, unknown columns {unknown}")
        pred = np.asarray(pred, np.float64)
        if pred.shape[-1:] != (len(PREDICTION_COLUMNS),):
            raise ValueError(f"{self!r}.table: prediction rows must end in {len(PREDICTION_COLUMNS)}, got {pred.shape}")
        shape = pred.shape[:-1]
        own = [np.broadcast_to(np.asarray(columns[n], np.float64), shape)[..., None] for n in self.own]
        return np.concatenate([pred, *own], axis=-1)

    def stack(self, rows) -> np.ndarray:
        """Float32 table (n, len(self)) of rows built one call at a time by `table`."""
        table = np.asarray(rows, np.float64)
        table = table.reshape(0, len(self)) if table.size == 0 else table
        if table.ndim != 2 or table.shape[1] != len(self):
            raise ValueError(f"{self!r}.stack: rows must have {len(self)} columns, got shape {table.shape}")
        return table.astype(np.float32)


_P = Columns()


def _prediction_rows(px, pm, pd, qx, qm, qd) -> np.ndarray:
    return np.stack(np.broadcast_arrays(px, pm, pd, qx, qm, qd), axis=-1)


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
            return _prediction_rows(px=one, pm=-s, pd=a, qx=zero, qm=one, qd=one)
        if prediction_type == "sample":
            return _prediction_rows(px=zero, pm=one, pd=one, qx=one, qm=-a, qd=np.where(s > 0, s, 1.0))
        if prediction_type == "v_prediction":
            r2 = a * a + s * s
            r = np.sqrt(r2)
            return _prediction_rows(px=a / r2, pm=-s / r, pd=one, qx=s / r2, qm=a / r, qd=one)
        if prediction_type == "flow_prediction":
            return _prediction_rows(px=one, pm=-s, pd=one, qx=one, qm=a, qd=one)
    raise ValueError(f"unsupported prediction_type {prediction_type!r}: use one of {PREDICTION_TYPES}")


def x0_coefficients(px, pm) -> np.ndarray:
    """Prediction rows for x0 = px*x + pm*out given directly (EDM-style preconditioning; eps not needed)."""
    px, pm = np.asarray(px, np.float64), np.asarray(pm, np.float64)
    one, zero = np.ones_like(px), np.zeros_like(px)
    return _prediction_rows(px=px, pm=pm, pd=one, qx=zero, qm=zero, qd=one)


def to_x0_eps(out: Tensor, x: Tensor, k: Tensor):
    """(x0, eps) from the net output and sample with a coefficient row k (its prediction columns)."""
    return (k[_P.px] * x + k[_P.pm] * out) / k[_P.pd], (k[_P.qx] * x + k[_P.qm] * out) / k[_P.qd]


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
