"""Broadcasts and axis swaps that stay cheap in memory under `mindspore.jit` on CPU.

MindSpore 2.10's CPU graph executor keeps per-kernel buffers alive for the life of the compiled
graph (measured, benchmarks/README.md "Graph-mode memory"):
- a broadcasting Mul / Add / Sub / Div whose smaller operand is a computed tensor (not a
  constant) keeps 4x its output's bytes: 6 such ops per PixArt block are ~0.9 GB per block at
  1024x1024 (2 x 4096 x 1152 fp32 outputs);
- `ops.transpose` / `Tensor.swapaxes` keep 2x their output's bytes from compile time on;
  `mint.transpose` does not.
PyNative caches kernels per shape, so there these cost nothing. The same-shape op after an
explicit `ops.tile` keeps nothing, and `ops.depend` on the activation makes the tile wait for it
(otherwise activation-independent tiles, e.g. every block's timestep modulation, run first and
are all held at once). Other backends get the plain broadcast and transpose.
"""
from mindspore import Tensor, mint, ops

from . import _backend
from ._checks import check


def expand_as(y: Tensor, x: Tensor) -> Tensor:
    """y (x's rank, size-1 axes to broadcast) at x's full shape on CPU, computed after x; y elsewhere.

    Exact (a copy). Use it for the smaller operand of a broadcasting elementwise op on a large
    activation: `x * expand_as(scale[:, None], x)`.
    """
    check(y.ndim == x.ndim and all(a in (1, b) for a, b in zip(y.shape, x.shape)), "expand_as",
          f"y must have x's rank with axes of 1 or x's size, got {y.shape} for x {x.shape}")
    if not _backend.IS_CPU or y.shape == x.shape:
        return y
    return ops.tile(ops.depend(y, x), tuple(b // a for a, b in zip(y.shape, x.shape)))


def swapaxes(x: Tensor, axis0: int, axis1: int) -> Tensor:
    """x with two axes swapped (Tensor.swapaxes), as `mint.transpose` on CPU (see the module note)."""
    if _backend.IS_CPU:
        return mint.transpose(x, axis0, axis1)
    return x.swapaxes(axis0, axis1)
