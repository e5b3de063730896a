"""conv2d microbenchmark: msdiff.ops.conv2d (im2col + matmul on CPU) against MindSpore's native Conv2D.

`python -m benchmarks.ops_bench [--smoke]` prints a table; `run(smoke)` returns its rows.
Each timing is the best of a few calls after one warm-up call (the machine is shared, so the
best call is the least disturbed one); launch_blocking is set so the time covers the kernels.
"""
import argparse
import time

import mindspore as ms
import numpy as np
from mindspore import Tensor
from mindspore import ops as mops

from msdiff import ops

# (label, batch, channels, spatial, kernel); SD-1.5 UNet conv shapes at 64x64 latents.
SHAPES = [
    ("sd 320@64 3x3", 1, 320, 64, 3),
    ("sd 640@32 3x3", 1, 640, 32, 3),
    ("sd 1280@16 3x3", 1, 1280, 16, 3),
    ("sd 320@64 1x1", 1, 320, 64, 1),
    ("sd 1280@16 1x1", 1, 1280, 16, 1),
    ("cfg 2x320@64 3x3", 2, 320, 64, 3),
]
SMOKE_SHAPES = [("smoke 16@8 3x3", 1, 16, 8, 3), ("smoke 16@8 1x1", 1, 16, 8, 1)]


def _best_ms(fn, repeats: int) -> float:
    fn().asnumpy()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn().asnumpy()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def _native(x, w, b, pad):
    y = mops.conv2d(x, w, pad_mode="pad", padding=pad)
    return y + b.reshape(1, -1, 1, 1)


def run(smoke: bool = False, native: bool = True, repeats: int = 3) -> list:
    """Rows {op, shape, dtype, ms, gflops, gemm_gflops, native_ms, native_gflops, speedup, max_rel_diff}."""
    ms.runtime.launch_blocking()
    rng = np.random.default_rng(0)
    rows = []
    for label, b, c, s, k in SMOKE_SHAPES if smoke else SHAPES:
        for dtype in (ms.float32, ms.float16):
            x = Tensor(rng.standard_normal((b, c, s, s)).astype(np.float32)).astype(dtype)
            w = Tensor((rng.standard_normal((c, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)).astype(dtype)
            bias = Tensor(rng.standard_normal(c).astype(np.float32)).astype(dtype)
            pad = k // 2
            flops = 2.0 * b * c * c * k * k * s * s
            fast_ms = _best_ms(lambda: ops.conv2d(x, w, bias, 1, pad), repeats)
            # The bare fp32 GEMM of the same size: the ceiling, and a load-independent yardstick.
            a = Tensor(rng.standard_normal((c, c * k * k)).astype(np.float32))
            m = Tensor(rng.standard_normal((c * k * k, b * s * s)).astype(np.float32))
            gemm_ms = _best_ms(lambda: mops.matmul(a, m), repeats)
            row = {"op": "conv2d", "shape": label, "dtype": str(dtype).lower(), "ms": round(fast_ms, 2),
                   "gflops": round(flops / fast_ms / 1e6, 1), "gemm_gflops": round(flops / gemm_ms / 1e6, 1)}
            # The native CPU kernel is ~1 GFLOP/s (seconds per call): one timed call after a tiny warm-up.
            if native:
                _native(x[:, :, :2, :2], w, bias, pad).asnumpy()
                t0 = time.perf_counter()
                ref = _native(x, w, bias, pad).asnumpy().astype(np.float64)
                nat_ms = (time.perf_counter() - t0) * 1e3
                got = ops.conv2d(x, w, bias, 1, pad).asnumpy().astype(np.float64)
                row.update({"native_ms": round(nat_ms, 1), "native_gflops": round(flops / nat_ms / 1e6, 2),
                            "speedup": round(nat_ms / fast_ms, 1),
                            "max_rel_diff": float(np.abs(got - ref).max() / np.abs(ref).max())})
            rows.append(row)
    return rows


def format_table(rows: list) -> str:
    """Plain-text table of run()'s rows."""
    head = f"{'op':7} {'shape':18} {'dtype':8} {'ms':>9} {'GFLOP/s':>8} {'GEMM GF/s':>9} {'native ms':>10} " \
           f"{'native GF/s':>11} {'speedup':>8} {'max rel diff':>12}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['op']:7} {r['shape']:18} {r['dtype']:8} {r['ms']:9.2f} {r['gflops']:8.1f} "
                     f"{r['gemm_gflops']:9.1f} "
                     f"{r.get('native_ms', float('nan')):10.1f} {r.get('native_gflops', float('nan')):11.2f} "
                     f"{r.get('speedup', float('nan')):8.1f} {r.get('max_rel_diff', float('nan')):12.2e}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny shapes, seconds")
    p.add_argument("--no-native", action="store_true", help="skip MindSpore's native Conv2D (~6 s per large call)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(format_table(run(args.smoke, not args.no_native, args.repeats)))


if __name__ == "__main__":
    main()
