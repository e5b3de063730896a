"""Per-block precision plans: named sub-cells of a half-precision net computed in float32.

`apply_fp32_blocks(net, ["decoder.up_blocks.3", ...])` turns each named sub-cell into an fp32 block: its
parameters become float32, floating inputs are cast to float32 on entry and floating outputs back to the net's
dtype on exit. A block's output must therefore fit the half-precision range; put the fp32 region around the
overflowing activations up to where a norm brings them back (msdiff.diagnose.precision_report finds it).
Parameter names are unchanged (the cell keeps its place in the tree; its class becomes an `Fp32<Block>`
subclass whose construct adds the casts), so weights, graph compilation and name-based copies work as before.
"""
from typing import Iterable, Tuple

import mindspore as ms
from mindspore import Tensor, nn

_FLOATS = (ms.float16, ms.float32, ms.bfloat16)


def cast_floats(x, dtype):
    """x with every floating Tensor (also inside tuples / lists, one level of nesting each) cast to dtype."""
    if isinstance(x, Tensor):
        if x.dtype in _FLOATS and x.dtype != dtype:
            return x.astype(dtype)
        return x
    if isinstance(x, (tuple, list)):
        out = ()
        for v in x:
            out = out + (cast_floats(v, dtype),)
        return out
    return x


class Fp32Block:
    """Mixin of the fp32 variant of a block class: casts in, base construct in float32, casts out."""

    def construct(self, *args, **kwargs):
        inputs = ()
        for v in args:
            inputs = inputs + (cast_floats(v, ms.float32),)
        named = {}
        for k, v in kwargs.items():
            named[k] = cast_floats(v, ms.float32)
        return cast_floats(self._fp32_base_construct(*inputs, **named), self.fp32_exit_dtype)


_CLASSES = {}


def _fp32_class(base: type) -> type:
    """The Fp32Block subclass of a block class (one per class, so compiled graphs are shared)."""
    if issubclass(base, Fp32Block):
        return base
    if base not in _CLASSES:
        _CLASSES[base] = type(f"Fp32{base.__name__}", (Fp32Block, base),
                              {"_fp32_base_construct": base.construct, "_fp32_base_class": base,
                               "__module__": base.__module__})
    return _CLASSES[base]


def net_dtype(net: nn.Cell):
    """The compute dtype of a net: its `compute_dtype`, else its first floating parameter's dtype."""
    dtype = getattr(net, "compute_dtype", None)
    if dtype is not None:
        return dtype
    for p in net.get_parameters():
        if p.dtype in _FLOATS:
            return p.dtype
    return ms.float32


def outermost(names: Iterable[str]) -> Tuple[str, ...]:
    """The names without those inside another listed name ("" is the whole net), sorted, duplicates dropped."""
    names = sorted(set(names))
    if "" in names:
        return ("",)
    return tuple(n for n in names if not any(n.startswith(m + ".") for m in names if m != n))


def apply_fp32_blocks(net: nn.Cell, names: Iterable[str]) -> nn.Cell:
    """Make the named sub-cells of `net` compute in float32 (in place; returns net). "" names the whole net.

    ValueError names any name that is not a sub-cell of the net. The plan used is kept as `net.fp32_blocks`.
    """
    names = (names,) if isinstance(names, str) else tuple(names)
    cells = dict(net.cells_and_names())
    unknown = [n for n in names if n not in cells]
    if unknown:
        blocks = [n for n in cells if n and n.count(".") <= 2][:12]
        raise ValueError(f"fp32_blocks: {unknown} are not sub-cells of {type(net).__name__}; names are the "
                         f"net's module paths, e.g. {blocks}")
    exit_dtype = net_dtype(net)
    plan = outermost(tuple(getattr(net, "fp32_blocks", ())) + names)
    if exit_dtype != ms.float32:
        for name in plan:
            cell = cells[name]
            for p in cell.get_parameters():
                if p.dtype in _FLOATS and p.dtype != ms.float32:
                    p.set_dtype(ms.float32)
            for _, sub in cell.cells_and_names():
                if getattr(sub, "compute_dtype", None) is not None:
                    sub.compute_dtype = ms.float32
                if isinstance(sub, Fp32Block):  # an earlier plan's block, now inside this one: no exit cast
                    sub.fp32_exit_dtype = ms.float32
            cell.__class__ = _fp32_class(type(cell))
            cell.fp32_exit_dtype = exit_dtype
    net.fp32_blocks = plan
    return net


def format_plan(net: nn.Cell) -> str:
    """One line naming the net's dtype and its fp32 blocks (for `msdiff generate --verbose`)."""
    dtype = str(getattr(net, "fp32_exit_dtype", None) or net_dtype(net)).replace("mindspore.", "")
    plan = getattr(net, "fp32_blocks", ())
    cells = dict(net.cells_and_names())
    if not plan:
        return f"{type(net).__name__}: {dtype}, no fp32 blocks"
    listed = ", ".join(f"{n or '<whole net>'} ({type(cells[n]).__name__.removeprefix('Fp32')})" for n in plan)
    return f"{type(net).__name__}: {dtype}, fp32 blocks: {listed}"
