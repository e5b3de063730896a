"""Adaptive average pooling (torch semantics) as two small averaging matmuls, fp32 on every backend."""
import math

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor, ops
from mindspore.ops import constexpr

from ._checks import check


@constexpr
def _bins(out_len: int, in_len: int) -> tuple:
    """Rows of the [out, in] averaging matrix of torch's adaptive pooling: bin i averages
    [floor(i * in / out), ceil((i + 1) * in / out)) (host, float64)."""
    rows = []
    for i in range(out_len):
        start, end = (i * in_len) // out_len, math.ceil((i + 1) * in_len / out_len)
        row = np.zeros(in_len)
        row[start:end] = 1.0 / (end - start)
        rows.append(tuple(float(v) for v in row))
    return tuple(rows)


def adaptive_avg_pool2d(x: Float[Tensor, "b c h w"], output_size) -> Float[Tensor, "b c oh ow"]:
    """fp32 compute, output in x.dtype: torch's adaptive_avg_pool2d (overlapping bins when upsampling too)."""
    check(x.ndim == 4, "adaptive_avg_pool2d", f"x must be [b, c, h, w], got shape {x.shape}")
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    check(oh > 0 and ow > 0, "adaptive_avg_pool2d", f"output size must be positive, got {output_size}")
    b, c, h, w = x.shape
    ph = Tensor(_bins(oh, h), ms.float32)
    pw = Tensor(_bins(ow, w), ms.float32)
    y = ops.matmul(ph, x.astype(ms.float32).reshape(b * c, h, w))
    y = ops.matmul(y, pw.swapaxes(0, 1))
    return y.reshape(b, c, oh, ow).astype(x.dtype)
