"""Padding and interpolation (torch semantics). Interpolation indices and weights are computed
in float64 numpy from static shapes, so every backend gathers the same pixels."""
import math

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor, ops
from mindspore.ops import constexpr

from ._checks import check


def pad(x: Tensor, padding, mode: str = "constant", value: float = 0.0) -> Tensor:
    """Exact, input dtype: pad x; padding is torch-ordered (last axis first): (left, right, top, bottom, ...)."""
    check(mode in ("constant", "reflect", "replicate"), "pad", f"unsupported mode {mode!r}")
    if mode == "constant":
        return ops.pad(x, tuple(padding), mode=mode, value=value)
    return ops.pad(x, tuple(padding), mode=mode)


@constexpr
def _nearest_index(out_len: int, in_len: int, scale) -> tuple:
    """torch's nearest source index floor(dst * step), step = 1/scale_factor or in/out (host, float64)."""
    step = 1.0 / scale if scale is not None else in_len / out_len
    idx = np.minimum(np.floor(np.arange(out_len, dtype=np.float64) * step), in_len - 1)
    return tuple(int(i) for i in idx)


@constexpr
def _bilinear_plan(out_len: int, in_len: int, scale, align_corners: bool) -> tuple:
    """(i0, i1, lambda) per output pixel from torch's area_pixel_compute_source_index (host, float64)."""
    dst = np.arange(out_len, dtype=np.float64)
    if align_corners:
        src = dst * ((in_len - 1) / (out_len - 1) if out_len > 1 else 0.0)
    else:
        step = 1.0 / scale if scale is not None else in_len / out_len
        src = np.maximum((dst + 0.5) * step - 0.5, 0.0)
    i0 = np.minimum(np.floor(src), in_len - 1)
    i1 = np.minimum(i0 + 1, in_len - 1)
    return tuple(int(i) for i in i0), tuple(int(i) for i in i1), tuple(float(v) for v in src - i0)


def _nearest_axis(x: Tensor, axis: int, out_len: int, scale) -> Tensor:
    n = x.shape[axis]
    if scale is None and out_len % n == 0 or scale is not None and float(scale) == out_len // n == out_len / n:
        f = out_len // n
        if f == 1:
            return x
        shape = x.shape
        x = x.expand_dims(axis + 1)
        tile = [1] * x.ndim
        tile[axis + 1] = f
        x = ops.tile(x, tuple(tile))
        return x.reshape(shape[:axis] + (out_len,) + shape[axis + 1:])
    return ops.gather(x, Tensor(_nearest_index(out_len, n, scale), ms.int32), axis)


def _bilinear_axis(x: Tensor, axis: int, out_len: int, scale, align_corners: bool) -> Tensor:
    n = x.shape[axis]
    i0, i1, lam = _bilinear_plan(out_len, n, scale, align_corners)
    shape = (1, 1, out_len, 1) if axis == 2 else (1, 1, 1, out_len)
    lam = Tensor(lam, ms.float32).reshape(shape)
    a, b = ops.gather(x, Tensor(i0, ms.int32), axis), ops.gather(x, Tensor(i1, ms.int32), axis)
    return a * (1.0 - lam) + b * lam


def interpolate(x: Float[Tensor, "b c h w"], size=None, scale_factor=None, mode: str = "nearest",
                align_corners: bool = False) -> Float[Tensor, "b c oh ow"]:
    """Exact (nearest) or fp32 (bilinear) compute, output in x.dtype: resize x[b, c, h, w] like torch F.interpolate.

    As in torch, a given scale_factor (not the rounded size) sets the source-coordinate step.
    """
    check(x.ndim == 4, "interpolate", f"x must be [b, c, h, w], got shape {x.shape}")
    check(mode in ("nearest", "bilinear"), "interpolate", f"unsupported mode {mode!r}")
    check((size is None) != (scale_factor is None), "interpolate", "give exactly one of size, scale_factor")
    scales = (None, None)
    if size is None:
        scales = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
        size = (int(math.floor(x.shape[2] * scales[0])), int(math.floor(x.shape[3] * scales[1])))
    size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    check(size[0] > 0 and size[1] > 0, "interpolate", f"output size must be positive, got {size}")
    if mode == "nearest":
        return _nearest_axis(_nearest_axis(x, 2, size[0], scales[0]), 3, size[1], scales[1])
    xf = x.astype(ms.float32)
    y = _bilinear_axis(_bilinear_axis(xf, 2, size[0], scales[0], align_corners), 3, size[1], scales[1], align_corners)
    return y.astype(x.dtype)


def embedding(ids: Tensor, table: Tensor) -> Tensor:
    """Exact, table dtype: rows of table[num, dim] picked by integer ids[...] -> [..., dim]."""
    return ops.gather(table, ids, 0)
