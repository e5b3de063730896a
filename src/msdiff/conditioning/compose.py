"""compose(net, *pieces, guidance=...) -> the loop's Model: one pure function over one flat tuple of inputs."""
from typing import Callable

import mindspore as ms
import numpy as np
from mindspore import Tensor

from ..samplers import Model
from .guidance import NoGuidance

ROLES = ("inputs", "residual", "channels", "output", "post")


def _layout(parts: list) -> list:
    """(part, input slice, scale slice) for each part, in order, over the flat inputs / scales."""
    out, i, s = [], 0, 0
    for p in parts:
        n_in = len(p.inputs)
        out.append((p, slice(i, i + n_in), slice(s, s + p.n_scales)))
        i, s = i + n_in, s + p.n_scales
    return out


def compose(net: Callable, *pieces, guidance=None) -> Model:
    """The net wrapped by conditioning pieces and a guidance (NoGuidance, CFG, Pix2Pix) into one Model.

    Inside the step: the sample is expanded for guidance; "inputs" pieces give the net's keywords; "residual"
    pieces (ControlNet, Adapter) run on the expanded sample and add their residuals; "channels" pieces append
    input channels; the net runs; "output" pieces act on its output (float32); guidance combines the copies;
    "post" pieces act on the sampler's result.
    """
    guidance = NoGuidance() if guidance is None else guidance
    for p in pieces:
        if getattr(p, "role", None) not in ROLES:
            raise TypeError(f"{type(p).__name__} is not a conditioning piece (role must be one of {ROLES})")
    layout = _layout([guidance] + list(pieces))
    g_in, g_sc = layout[0][1], layout[0][2]
    by_role = {r: [e for e in layout[1:] if e[0].role == r] for r in ROLES}
    names = [n for p, _, _ in by_role["inputs"] for n in p.names]
    if len(set(names)) != len(names):
        raise ValueError(f"net keywords given twice: {sorted(n for n in set(names) if names.count(n) > 1)}")

    def fn(x, t, inputs, scales):
        b = x.shape[0]
        xin = guidance.expand(x)
        kw = {}
        for p, si, _ in by_role["inputs"]:
            for name, value in zip(p.names, inputs[si]):
                kw[name] = value
        residuals = {}
        for p, si, ss in by_role["residual"]:
            residuals = p.add(residuals, x, xin, t, kw, inputs[si], scales[ss], guidance)
        for p, si, _ in by_role["channels"]:
            xin = p.apply(xin, inputs[si])
        for name in residuals:
            kw[name] = residuals[name]
        out = net(xin, t, **kw).astype(ms.float32)
        for p, _, _ in by_role["output"]:
            out = p.apply(out)
        return guidance.combine(out, b, inputs[g_in], scales[g_sc])

    def post(x, inputs, scales):
        for p, si, ss in by_role["post"]:
            x = p.apply(x, inputs[si], scales[ss])
        return x

    def per_call(i: int, n: int) -> tuple:
        values = ()
        for p, _, _ in layout:
            values = values + tuple(p.scales(i, n))
        return values

    inputs = ()
    for p, _, _ in layout:
        inputs = inputs + tuple(p.inputs)
    key = (guidance.key,) + tuple(p.key for p in pieces)
    return Model(fn, inputs, per_call, post if by_role["post"] else None, key, net)


def scales_at(model: Model, i: int, n: int) -> Tensor:
    """The float32 scales vector the loop passes at call i of n (for calling model.fn by hand)."""
    return Tensor(np.asarray(tuple(model.scales(i, n)) or (0.0,), np.float32))
