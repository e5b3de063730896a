"""The ops the seed table marks ❌ in fp16 (GroupNorm, softmax/bmm, FIR), against float64 numpy."""
from pathlib import Path

import numpy as np

from . import Row, call

AREA = ""  # no fixture folder: references are computed in float64 here


def rows(_fix: Path) -> list:
    """The ops the seed table marks ❌ in fp16 (GroupNorm, softmax/bmm, FIR), against float64 numpy."""
    import mindspore as ms
    from msdiff import ops
    rng = np.random.default_rng(0)
    x = (300.0 + 20.0 * rng.standard_normal((2, 32, 16, 16))).astype(np.float32)
    w, b = rng.standard_normal(32).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    xg = x.astype(np.float64).reshape(2, 8, -1)
    gn_ref = ((xg - xg.mean(-1, keepdims=True)) / np.sqrt(xg.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
    gn_ref = gn_ref * w.reshape(1, -1, 1, 1) + b.reshape(1, -1, 1, 1)
    q = (4.0 * rng.standard_normal((2, 4, 64, 16))).astype(np.float32)
    s = np.einsum("bhnd,bhmd->bhnm", q.astype(np.float64), q.astype(np.float64)) / 4.0
    p = np.exp(s - s.max(-1, keepdims=True))
    att_ref = np.einsum("bhnm,bhmd->bhnd", p / p.sum(-1, keepdims=True), q.astype(np.float64))
    k = np.array([1.0, 3.0, 3.0, 1.0])
    k2 = np.outer(k, k) / np.outer(k, k).sum()
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 2), (1, 2)))
    fir_ref = sum(xp[:, :, i:i + 16:2, j:j + 16:2] * k2[3 - i, 3 - j] for i in range(4) for j in range(4))

    def case(fn, args, ref):
        def run(mode, dtype):
            t = [ms.Tensor(a).astype(getattr(ms, dtype)) if isinstance(a, np.ndarray) else a for a in args]
            return [(call(fn, mode, *t)[0], ref)]
        return run

    def gn(x, w, b):
        return ops.group_norm(x, 8, w, b, 1e-5)

    def att(q):
        return ops.softmax_bmm_attention(q, q, q)

    def fir(x):
        return ops.downsample_fir(x, kernel=(1, 3, 3, 1), factor=2)

    return [Row("group_norm (activations ~300)", "op vs float64", case(gn, (x, w, b), gn_ref)),
            Row("softmax_bmm_attention", "op vs float64", case(att, (q,), att_ref)),
            Row("downsample_fir (FIR conv)", "op vs float64", case(fir, (x,), fir_ref))]
