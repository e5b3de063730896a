"""Broadcasts and axis swaps that stay cheap in memory under `mindspore.jit` on CPU.

MindSpore 2.10's CPU graph executor keeps per-kernel buffers alive for the life of the compiled
graph (measured, benchmarks/README.md "Graph-mode memory"):
- a broadcasting Mul / Add / Sub / Div whose smaller operand is a computed tensor (not a
  constant) keeps 4x its output's bytes: 6 such ops per PixArt block are ~0.9 GB per block at
  1024x1024 (2 x 4096 x 1152 fp32 outputs);
- `ops.transpose` / `Tensor.swapaxes` / `Tensor.transpose` keep 2x their output's bytes from compile time on;
  `mint.transpose` / `mint.permute` do not.
PyNative caches kernels per shape, so there these cost nothing. The same-shape op after an
explicit `ops.tile` keeps nothing, and `ops.depend` on the activation makes the tile wait for it
(otherwise activation-independent tiles, e.g. every block's timestep modulation, run first and
are all held at once). Other backends get the plain broadcast and transpose.
"""
from jaxtyping import Float
from mindspore import Tensor, mint, ops
from mindspore.ops import constexpr

from . import _backend
from ._checks import check


def expand_as(y: Tensor, x: Tensor) -> Tensor:
    """y (x's rank, size-1 axes to broadcast) at x's full shape on CPU, computed after x; y elsewhere.

    Exact (a copy). Use it for the smaller operand of a broadcasting elementwise op on a large
    activation: `x * expand_as(scale[:, None], x)`.
    """
    reps = _tile_reps(y.shape, x.shape)
    if not _backend.IS_CPU or y.shape == x.shape:
        return y
    return ops.tile(ops.depend(y, x), reps)


@constexpr
def _tile_reps(y_shape: tuple, x_shape: tuple) -> tuple:
    """x_shape // y_shape per axis, or ValueError unless y_shape is x_shape with some axes 1. A constexpr: under
    mindspore.jit a generator expression on shapes becomes a runtime Python call (PyExecute) and its `if` a Switch,
    which splits the compiled graph into segments at every call."""
    check(len(y_shape) == len(x_shape) and all(a in (1, b) for a, b in zip(y_shape, x_shape)), "expand_as",
          f"y must have x's rank with axes of 1 or x's size, got {y_shape} for x {x_shape}")
    return tuple(b // a for a, b in zip(y_shape, x_shape))


def add_channels(x: Float[Tensor, "b c ..."], v: Float[Tensor, "b c"]) -> Tensor:
    """x + v[:, :, None, ...] (a per-sample, per-channel offset, e.g. a resnet's time embedding), exact.

    On CPU one BiasAdd over x's [1, b * c, ...] view: no broadcast buffer is kept in graph mode and no tile is
    materialised (SD-1.5's 320-channel 64x64 resnet add: 40 MB kept per call with the broadcast, 0 with this).
    """
    check(v.shape == x.shape[:2] and x.ndim >= 3, "add_channels",
          f"v must be [b, c] of x [b, c, ...], got {v.shape} for x {x.shape}")
    if not _backend.IS_CPU:
        return x + v.reshape(v.shape + (1,) * (x.ndim - 2))
    b, c = x.shape[0], x.shape[1]
    return ops.bias_add(x.reshape((1, b * c) + x.shape[2:]), v.reshape(b * c).astype(x.dtype)).reshape(x.shape)


def permute(x: Tensor, axes: tuple) -> Tensor:
    """x with its axes reordered (Tensor.transpose(*axes)), as `mint.permute` on CPU (see the module note): keeps no
    buffer under jit, but the copy of its view is 4-5x slower there than Tensor.transpose's kernel ([2, 320, 64, 64]
    fp32 to tokens and back: 54 vs 10 ms), so it suits memory-bound spots, not hot paths."""
    if _backend.IS_CPU:
        return mint.permute(x, axes)
    return x.transpose(axes)


def swapaxes(x: Tensor, axis0: int, axis1: int) -> Tensor:
    """x with two axes swapped (Tensor.swapaxes), as `mint.transpose` on CPU (see the module note)."""
    if _backend.IS_CPU:
        return mint.transpose(x, axis0, axis1)
    return x.swapaxes(axis0, axis1)
