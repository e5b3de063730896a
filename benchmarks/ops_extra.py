"""MindSpore side of the op cases in specs.op_cases: msdiff's op against MindSpore's native formulation."""
import math

import mindspore as ms
import numpy as np
from mindspore import Tensor
from mindspore import ops as mops

from msdiff import ops

from ._timing import gflops, time_call

_MS_DTYPES = {"float32": ms.float32, "float16": ms.float16}


def _tensor(rng, shape, dtype, scale=1.0) -> Tensor:
    return Tensor((rng.standard_normal(shape) * scale).astype(np.float32)).astype(_MS_DTYPES[dtype])


def _fir_taps(kernel, gain: float) -> np.ndarray:
    k = np.outer(kernel, kernel).astype(np.float32)
    return k / k.sum() * gain


def _native_upsample_fir(x: Tensor, taps: np.ndarray, factor: int) -> Tensor:
    """Zero insertion, pad, then MindSpore's depthwise Conv2D with the (symmetric) taps."""
    b, c, h, w = x.shape
    x6 = x.reshape(b, c, h, 1, w, 1)
    row = mops.cat([x6] + [mops.zeros_like(x6)] * (factor - 1), axis=5)
    full = mops.cat([row] + [mops.zeros_like(row)] * (factor - 1), axis=3).reshape(b, c, h * factor, w * factor)
    p = taps.shape[0] - factor
    full = mops.pad(full, ((p + 1) // 2 + factor - 1, p // 2, (p + 1) // 2 + factor - 1, p // 2))
    weight = Tensor(np.broadcast_to(taps[::-1, ::-1], (c, 1) + taps.shape).copy())
    return mops.conv2d(full, weight, groups=c)


def _native_downsample_fir(x: Tensor, taps: np.ndarray, factor: int) -> Tensor:
    """Pad, then MindSpore's strided depthwise Conv2D with the taps."""
    c = x.shape[1]
    p = taps.shape[0] - factor
    weight = Tensor(np.broadcast_to(taps[::-1, ::-1], (c, 1) + taps.shape).copy())
    return mops.conv2d(mops.pad(x, ((p + 1) // 2, p // 2, (p + 1) // 2, p // 2)), weight, stride=factor, groups=c)


def _impls(case: dict, rng) -> tuple:
    """(msdiff fn, native fn, native description) for one case; inputs made here, outside the timed calls."""
    op, dtype, shape = case["op"], case["dtype"], tuple(case["shape"])
    if op == "attention":
        q, k, v = (_tensor(rng, shape, dtype) for _ in range(3))
        scale = 1.0 / math.sqrt(shape[-1])

        def native():
            probs = mops.softmax(mops.matmul(q, k.swapaxes(-1, -2)) * scale, axis=-1)
            return mops.matmul(probs, v)
        return (lambda: ops.attention(q, k, v)), native, f"matmul-softmax-matmul in {dtype}"
    if op == "group_norm":
        x = _tensor(rng, shape, dtype)
        weight, bias = _tensor(rng, shape[1:2], dtype, 0.1) + 1, _tensor(rng, shape[1:2], dtype, 0.1)
        g = case["groups"]
        return ((lambda: ops.group_norm(x, g, weight, bias, 1e-5)),
                (lambda: mops.group_norm(x, g, weight, bias, 1e-5)), f"mindspore.ops.group_norm in {dtype}")
    if op in ("upsample_fir", "downsample_fir"):
        x = _tensor(rng, shape, dtype)
        factor, kernel = case["factor"], case["kernel"]
        if op == "upsample_fir":
            taps = _fir_taps(kernel, factor ** 2)
            return ((lambda: ops.upsample_fir(x, kernel=kernel, factor=factor)),
                    (lambda: _native_upsample_fir(x, taps, factor)), "zero-insert + depthwise Conv2D")
        taps = _fir_taps(kernel, 1.0)
        return ((lambda: ops.downsample_fir(x, kernel=kernel, factor=factor)),
                (lambda: _native_downsample_fir(x, taps, factor)), "strided depthwise Conv2D")
    if op == "conv2d":
        x = _tensor(rng, shape, dtype)
        fan_in = shape[1] * case["kernel_size"] ** 2
        w = _tensor(rng, (case["out"], shape[1], case["kernel_size"], case["kernel_size"]), dtype, fan_in ** -0.5)
        b = _tensor(rng, (case["out"],), dtype, 0.1)
        pad = case["padding"]
        return ((lambda: ops.conv2d(x, w, b, padding=pad)),
                (lambda: mops.conv2d(x, w, b, pad_mode="pad", padding=pad)), "mindspore.ops.conv2d (Conv2D)")
    raise ValueError(f"unknown op case {op!r}")


def _synced(fn, keep: list):
    """fn followed by a host read of its output (waits for asynchronous launches; cheap when blocking)."""
    def call():
        keep[:] = [fn().asnumpy()]
    return call


def run_case(case: dict, min_time: float, max_reps: int) -> dict:
    """One op case: msdiff and native timings, GFLOP/s, and the max abs difference between the two outputs."""
    rng = np.random.default_rng(0)
    fast, native, native_desc = _impls(case, rng)
    row = {"section": "ops", "source": "benchmarks.specs", "op": case["op"], "label": case["label"],
           "dtype": case["dtype"], "flops": case["flops"], "native_impl": native_desc}
    fast_out, native_out = [], []
    t = time_call(_synced(fast, fast_out), min_time, max_reps)
    row.update(msdiff_ms=t["ms"], msdiff_reps=t["reps"], msdiff_gflops=gflops(case["flops"], t["ms"]))
    try:
        t = time_call(_synced(native, native_out), min_time, max_reps, single_above=5.0)
    except Exception as e:  # a native kernel missing on this backend is a result, not a crash
        row.update(native_ms=None, native_error=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
        return row
    row.update(native_ms=t["ms"], native_reps=t["reps"], native_gflops=gflops(case["flops"], t["ms"]))
    diff = fast_out[0].astype(np.float32) - native_out[0].astype(np.float32)
    row["max_abs_diff_vs_native"] = float(np.max(np.abs(diff)))
    return row


def run(cases: list, smoke: bool, log=print) -> list:
    """All op cases, in this process."""
    min_time, max_reps = (0.0, 1) if smoke else (1.0, 10)
    rows = []
    for case in cases:
        log(f"  op  {case['label']} {case['dtype']}")
        rows.append(run_case(case, min_time, max_reps))
    return rows
