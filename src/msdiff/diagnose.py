"""fp16 diagnostics (PyNative forward hooks, diffusers-style block names).

`first_nonfinite` finds the first block that produces inf/nan; `precision_report` runs a net in fp16 and fp32
block by block (largest activation against the fp16 range, each block's own and accumulated error) and
`PrecisionReport.suggest_plan` turns it into the `fp32_blocks` plan that `msdiff.load` accepts.
"""
from dataclasses import dataclass
from typing import Optional

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

_FLOATS = (ms.float16, ms.float32, ms.bfloat16)


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


# Precision report -------------------------------------------------------------------------------------------

FP16_MAX = 65504.0


@dataclass(frozen=True)
class BlockPrecision:
    """One block of a precision report: its fp32 activations against the fp16 range and its fp16 errors.

    absmax / input_absmax: largest |value| of the block's fp32 output / floating inputs; local_error: relative L2 error of the block run in
    fp16 on its own fp32 inputs (rounded to fp16) against its fp32 output (inf if that output is non-finite);
    error: the same for the block's output inside the whole fp16 run (errors of earlier blocks included).
    """

    name: str
    cell_type: str
    absmax: float
    input_absmax: float
    local_error: float
    error: float

    @property
    def range_used(self) -> float:
        """absmax as a fraction of the largest fp16 value (> 1: overflows in fp16)."""
        return self.absmax / FP16_MAX


@dataclass(frozen=True)
class PrecisionReport:
    """Per-block fp16 vs fp32 measurements of one net on given inputs, in execution order."""

    net_type: str
    blocks: tuple
    output_error: float

    def __str__(self) -> str:
        head = (f"precision report for {self.net_type} (fp16 vs fp32; output rel L2 {self.output_error:.2e})\n"
                f"{'block':<48} {'type':<26} {'|in| fp32':>10} {'|out| fp32':>10} {'of fp16':>8} {'local err':>10} "
                f"{'run err':>10}")
        lines = [f"{b.name or '<net>':<48} {b.cell_type:<26} {b.input_absmax:>10.4g} {b.absmax:>10.4g} {b.range_used:>8.1%} "
                 f"{b.local_error:>10.2e} {b.error:>10.2e}" for b in self.blocks]
        return "\n".join([head] + lines)

    def suggest_plan(self, headroom: float = 0.5, max_error: Optional[float] = None) -> tuple:
        """fp32_blocks for msdiff.load. A block is hot when its fp32 output passes headroom x the fp16 range, when
        it turns non-finite in fp16 from inputs within the range, or (with max_error) when its local error passes
        max_error; a hot block that holds a hot reported block is explained by it. Each hot block is widened to
        the nearest enclosing reported block whose output fits the range (the plan casts outputs back to fp16)."""
        from .nets._precision import outermost

        by_name = {b.name: b for b in self.blocks}
        limit = headroom * FP16_MAX

        def fits(value):
            return bool(np.isfinite(value)) and value <= limit

        def inside(name, outer):
            return outer == "" and name != "" or name.startswith(outer + ".")

        hot = []
        for b in self.blocks:
            if (not fits(b.absmax) or (not np.isfinite(b.local_error) and fits(b.input_absmax))
                    or (max_error is not None and b.local_error > max_error)):
                hot.append(b.name)
        hot = [n for n in hot if not any(inside(m, n) for m in hot)]
        plan = []
        for name in hot:
            while name and not fits(by_name[name].absmax):
                name = name.rsplit(".", 1)[0] if "." in name else ""
                while name and name not in by_name:
                    name = name.rsplit(".", 1)[0] if "." in name else ""
            plan.append(name)
        return outermost(plan)


def _components(name: str) -> int:
    """Depth of a cell name, a list index counted with its list ("down_blocks.0.resnets.1" -> 2)."""
    return sum(1 for part in name.split(".") if not part.isdigit()) if name else 0


def default_blocks(net: nn.Cell, depth: int = 2) -> list:
    """Names of the sub-cells down to `depth` (list containers left out), in definition order."""
    return [n for n, c in net.cells_and_names()
            if n and _components(n) <= depth and not isinstance(c, (nn.CellList, nn.SequentialCell))]


def twin(net: nn.Cell, dtype) -> nn.Cell:
    """A copy of an msdiff net (built as type(net)(net.config, dtype=dtype)) with the same weights, no plan."""
    base = getattr(type(net), "_fp32_base_class", type(net))
    copy = base(net.config, dtype=dtype)
    source = dict(net.parameters_and_names())
    for name, p in copy.parameters_and_names():
        p.set_data(source[name].astype(p.dtype))
    copy.set_train(False)
    return copy


def _float_arrays(value) -> list:
    return [t.astype(ms.float32).asnumpy().astype(np.float64) for t in _tensors(value) if t.dtype in _FLOATS]


def _absmax_of(arrays: list) -> float:
    return max((float(np.abs(a).max()) for a in arrays if a.size), default=0.0)


def _rel(got: list, ref: list) -> float:
    num = sum(float(np.sum((g - r) ** 2)) for g, r in zip(got, ref))
    den = sum(float(np.sum(r ** 2)) for r in ref)
    if not all(np.isfinite(g).all() for g in got):
        return float("inf")
    return float(np.sqrt(num / den)) if den > 0 else float(np.sqrt(num))


def _record(net: nn.Cell, names: list, inputs: tuple, kwargs: dict) -> tuple:
    """(net output, {name: (args, kwargs)} of each named cell's first call, {name: its first output})."""
    cells = dict(net.cells_and_names())
    seen, outs, handles = {}, {}, []
    for name in names:
        def pre(cell, args, kw, name=name):
            seen.setdefault(name, (args, dict(kw)))

        def post(cell, args, output, name=name):
            outs.setdefault(name, output)
        handles += [cells[name].register_forward_pre_hook(pre, with_kwargs=True),
                    cells[name].register_forward_hook(post)]
    try:
        out = net(*inputs, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return out, seen, outs


def _like(value, like):
    """value with each floating Tensor cast to the dtype of the matching Tensor of `like` (same structure)."""
    if isinstance(value, Tensor) and isinstance(like, Tensor):
        return value.astype(like.dtype) if value.dtype != like.dtype else value
    if isinstance(value, (tuple, list)) and isinstance(like, (tuple, list)) and len(value) == len(like):
        return type(value)(_like(v, w) for v, w in zip(value, like))
    if isinstance(value, dict) and isinstance(like, dict):
        return {k: _like(v, like.get(k)) for k, v in value.items()}
    return value


def precision_report(net: nn.Cell, *inputs, blocks: Optional[list] = None, depth: int = 2,
                     fp32_blocks: tuple = (), **kwargs) -> PrecisionReport:
    """Run an msdiff net in fp16 and fp32 on the same inputs (PyNative) and measure every block.

    `net`: any msdiff net (its weights are used; fp16 and fp32 copies are built from its config). `blocks`:
    cell names to report (default: `default_blocks(net, depth)`); `fp32_blocks`: a plan applied to the fp16
    copy, to check that it works. Inputs are given as for the fp32 net; the fp16 copy gets them as it would.
    """
    from .nets._precision import apply_fp32_blocks

    net32, net16 = twin(net, ms.float32), twin(net, ms.float16)
    if fp32_blocks:
        apply_fp32_blocks(net16, fp32_blocks)
    names = list(blocks) if blocks is not None else default_blocks(net32, depth)
    out32, in32, res32 = _record(net32, names, inputs, kwargs)
    out16, in16, res16 = _record(net16, names, inputs, kwargs)
    cells16 = dict(net16.cells_and_names())
    rows = []
    for name in sorted((n for n in names if n in res32), key=list(in32).index):
        ref = _float_arrays(res32[name])
        args, kw = in16.get(name, in32[name])
        local = cells16[name](*_like(in32[name][0], args), **_like(in32[name][1], kw))
        rows.append(BlockPrecision(name, type(cells16[name]).__name__, _absmax_of(ref),
                                   _absmax_of(_float_arrays(in32[name])), _rel(_float_arrays(local), ref),
                                   _rel(_float_arrays(res16.get(name, ())), ref) if name in res16 else float("inf")))
    return PrecisionReport(type(net).__name__, tuple(rows), _rel(_float_arrays(out16), _float_arrays(out32)))


def format_plans(components) -> str:
    """One line per net of a pipeline (msdiff.Components or a dict of nets): its dtype and fp32 blocks, for
    `msdiff generate --dtype fp16 --verbose`."""
    from .nets._precision import format_plan

    if isinstance(components, dict):
        parts = dict(components)
    else:
        parts = {k: getattr(components, k) for k in ("unet", "vae", "text_encoder", "text_encoder_2")}
        parts.update(getattr(components, "extra", {}) or {})
    return "\n".join(f"{name}: {format_plan(net)}" for name, net in parts.items() if isinstance(net, nn.Cell))
