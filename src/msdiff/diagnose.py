"""Find where a network first produces inf/nan (PyNative forward hooks, diffusers-style names)."""
from dataclasses import dataclass
from typing import Optional

import numpy as np
from mindspore import Tensor, nn


@dataclass(frozen=True)
class NonFinite:
    """The first sub-cell, in execution order, whose output held inf or nan."""

    name: str
    cell_type: str
    input_absmax: float
    output_absmax: float

    def __str__(self) -> str:
        return (f"first non-finite output in {self.name or '<net>'} ({self.cell_type}): "
                f"input |max| {self.input_absmax:.4g}, output |max| {self.output_absmax:.4g}")


def _tensors(value):
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _absmax(tensors) -> float:
    """Largest finite-or-not |value| over float tensors (nan if any nan)."""
    best = 0.0
    for t in tensors:
        a = t.asnumpy()
        if a.dtype.kind != "f" or a.size == 0:
            continue
        a = np.abs(a.astype(np.float64))
        if np.isnan(a).any():
            return float("nan")
        best = max(best, float(a.max()))
    return best


def _finite(tensors) -> bool:
    return all(np.isfinite(t.asnumpy()).all() for t in tensors if t.asnumpy().dtype.kind == "f")


def first_nonfinite(net: nn.Cell, *inputs, **kwargs) -> Optional[NonFinite]:
    """Run net(*inputs, **kwargs) in PyNative and return the first block whose output is non-finite.

    Names are the net's parameter-path names (`down_blocks.0.resnets.1.norm1`), which equal
    diffusers' module names. Returns None when every output is finite.
    """
    found = []
    handles = []

    def make_hook(name):
        def hook(cell, args, output):
            if found:
                return
            outs = _tensors(output)
            if not _finite(outs):
                found.append(NonFinite(name, type(cell).__name__, _absmax(_tensors(args)), _absmax(outs)))
        return hook

    for name, cell in net.cells_and_names():
        handles.append(cell.register_forward_hook(make_hook(name)))
    try:
        net(*inputs, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return found[0] if found else None
