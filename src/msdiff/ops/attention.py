"""Scaled dot-product attention with an fp32 softmax.

On CPU all of it runs in fp32 (CPU fp32 matmul is faster than fp16 and exact enough); on
Ascend/GPU the two products run in the input dtype and only scores/softmax are fp32.
"""
import math

import mindspore as ms
from mindspore import Tensor, ops
from mindspore.ops import constexpr

from . import _backend
from ._checks import check
from .layout import expand_as


_BMM_NT = ops.BatchMatMul(transpose_b=True)
_BMM = ops.BatchMatMul()
# Query chunks of one attention call: more do not compile under mindspore.jit (its unrolled loop passes the
# graph call depth 1000 from ~200 chunks on); up to _SERIAL_CHUNKS they run one after another.
MAX_CHUNKS = 128
_SERIAL_CHUNKS = 64


@constexpr
def _range(start: int, stop: int) -> tuple:
    return tuple(range(start, stop))


def _rows(x, start: int, stop: int):
    """x[..., start:stop, :] as a Gather (MindSpore 2.10 PyNative copies a strided slice ~15x slower)."""
    return ops.gather(x, Tensor(_range(start, stop), ms.int32), x.ndim - 2)


def _q_kt(q, k):
    """q @ k^T without materialising k^T (a transposed copy costs more than the product on CPU)."""
    if q.ndim >= 3 and q.shape[:-2] == k.shape[:-2]:
        return _BMM_NT(q, k)
    return ops.matmul(q, k.swapaxes(-1, -2))


def _p_v(p, v):
    """p @ v. Same batch axes: the BatchMatMul primitive (CPU, 16 x 512 x 4096 @ 16 x 4096 x 40 fp32: 15 ms
    against 28-35 ms for ops.matmul, which goes through the broadcasting matmul path)."""
    if p.ndim >= 3 and p.shape[:-2] == v.shape[:-2]:
        return _BMM(p, v)
    return ops.matmul(p, v)


def _scores_softmax_v(q, k, v, mask, scale):
    if q.dtype == ms.float32:
        scores = _q_kt(q * scale, k)
    else:
        scores = _q_kt(q, k).astype(ms.float32) * scale
    if mask is not None:
        if mask.dtype == ms.bool_:
            scores = ops.masked_fill(scores, ops.logical_not(mask), float("-inf"))
        else:
            mask = mask.astype(ms.float32)
            scores = scores + expand_as(mask.reshape((1,) * (scores.ndim - mask.ndim) + mask.shape), scores)
    probs = ops.softmax(scores, axis=-1)
    return _p_v(probs if v.dtype == ms.float32 else probs.astype(v.dtype), v)


def softmax_bmm_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor = None,
                          scale: float = None, chunk_size: int = None) -> Tensor:
    """fp32 softmax (all fp32 on CPU), output in q.dtype: softmax(q k^T * scale + mask) v for q[..., n, d].

    k is [..., m, d], v is [..., m, e]; mask is additive (float) or boolean (True = attend),
    broadcastable to [..., n, m].
    chunk_size splits the query axis so at most [..., chunk_size, m] scores exist at once.
    """
    check(q.ndim >= 2 and q.ndim == k.ndim == v.ndim, "softmax_bmm_attention",
          f"q, k, v must have the same rank >= 2, got {q.shape}, {k.shape}, {v.shape}")
    check(q.shape[-1] == k.shape[-1], "softmax_bmm_attention",
          f"q and k head dims differ: {q.shape[-1]} vs {k.shape[-1]}")
    check(k.shape[-2] == v.shape[-2], "softmax_bmm_attention",
          f"k and v lengths differ: {k.shape[-2]} vs {v.shape[-2]}")
    check(q.dtype == k.dtype == v.dtype, "softmax_bmm_attention",
          f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    check(chunk_size is None or chunk_size > 0, "softmax_bmm_attention", f"chunk_size must be > 0, got {chunk_size}")
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    dtype = q.dtype
    if _backend.IS_CPU and dtype != ms.float32:
        q, k, v = q.astype(ms.float32), k.astype(ms.float32), v.astype(ms.float32)
    n = q.shape[-2]
    if chunk_size is None or chunk_size >= n:
        out = _scores_softmax_v(q, k, v, mask, scale)
        return out if out.dtype == dtype else out.astype(dtype)
    chunks = -(-n // chunk_size)
    check(chunks <= MAX_CHUNKS, "attention",
          f"{n} queries x {k.shape[-2]} keys in chunks of {chunk_size} queries make {chunks} chunks "
          f"(scores {math.prod(q.shape[:-1]) * k.shape[-2] * 4 / 2**30:.3g} GiB in fp32 unchunked), more than "
          f"{MAX_CHUNKS}: mindspore.jit cannot compile it (call depth) and PyNative takes hours on CPU; "
          f"use a smaller image size")
    # Graph mode would start every chunk at once (they are independent): up to _SERIAL_CHUNKS chunks,
    # each waits for the one before, so one chunk's scores are alive, as in PyNative (each ops.depend
    # also deepens the graph's calls, so more chunks run unchained).
    serial = chunks <= _SERIAL_CHUNKS
    outs = []
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        m = mask
        if mask is not None and mask.ndim >= 2 and mask.shape[-2] != 1:
            m = _rows(mask, start, stop)
        qc = _rows(q, start, stop)
        if serial and outs:
            qc = ops.depend(qc, outs[-1])
        outs.append(_scores_softmax_v(qc, k, v, m, scale))
    out = ops.cat(outs, axis=-2)
    return out if out.dtype == dtype else out.astype(dtype)


# Most attention scores held at once by `attention` without a fused kernel, in elements (fp32: 128 MiB).
SCORES_BUDGET = 1 << 25


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor = None, scale: float = None,
              chunk_size: int = None) -> Tensor:
    """fp32 softmax, output in q.dtype: the backend's fused kernel for q[b, h, n, d], else softmax_bmm.

    Without a fused kernel and without chunk_size, queries are chunked so the scores stay within
    SCORES_BUDGET (SD at 512x512: 2 x 8 x 4096 x 4096 scores would be 2 GiB per attention).
    """
    if _backend.IS_ASCEND and mask is None and chunk_size is None and q.ndim == 4:
        if scale is None:
            scale = 1.0 / math.sqrt(q.shape[-1])
        return ops.flash_attention_score(q, k, v, head_num=q.shape[1], input_layout="BNSD",
                                         scalar_value=scale)
    if chunk_size is None:
        rows = math.prod(q.shape[:-2]) * k.shape[-2]
        if rows * q.shape[-2] > SCORES_BUDGET:
            chunk_size = max(1, SCORES_BUDGET // rows)
    return softmax_bmm_attention(q, k, v, mask=mask, scale=scale, chunk_size=chunk_size)
