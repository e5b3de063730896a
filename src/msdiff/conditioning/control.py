"""Residual pieces: ControlNet residuals and T2I-Adapter features added inside the net, any number of each.

Several ControlNets add their residuals (diffusers' MultiControlNetModel sums them in order); several adapters
add their features (MultiAdapter's weighted sum); ControlNets and adapters combine (no diffusers pipeline does,
the UNet takes both). Scales and gates are per-call floats, so changing them recompiles nothing.
"""
from typing import Callable

from jaxtyping import Float
from mindspore import Tensor

from .pieces import Piece

DOWN, MID, INTRA = "down_block_additional_residuals", "mid_block_additional_residual", \
    "down_intrablock_additional_residuals"


def _add(a, b):
    """Elementwise sum of two residual tuples (or Tensors); None means nothing yet."""
    if a is None:
        return b
    if isinstance(b, Tensor):
        return a + b
    out = ()
    for x, y in zip(a, b):
        out = out + (x + y,)
    return out


class ControlNet(Piece):
    """A ControlNet called inside the guided step on the UNet's input, timestep and conditioning (diffusers'
    StableDiffusion[XL]ControlNet*Pipeline). `image`: the control image batched like the expanded UNet input, or
    like the conditional rows alone in guess mode (then the unconditional rows get zero residuals).
    `conditioning_scale` applies to the calls in [guidance_start, guidance_end) of the run, 0 outside (diffusers'
    controlnet_keep)."""

    role = "residual"
    n_scales = 1

    def __init__(self, net: Callable, image: Float[Tensor, "r c H W"], conditioning_scale: float = 1.0,
                 guidance_start: float = 0.0, guidance_end: float = 1.0, guess_mode: bool = False):
        if not 0.0 <= guidance_start < guidance_end <= 1.0:
            raise ValueError(f"need 0 <= control_guidance_start < control_guidance_end <= 1, got {guidance_start} "
                             f"and {guidance_end}")
        self.net, self.inputs = net, (image,)
        self.conditioning_scale = float(conditioning_scale)
        self.start, self.end, self.guess_mode = float(guidance_start), float(guidance_end), bool(guess_mode)
        self.key = ("controlnet", net, self.guess_mode)

    def scales(self, i: int, n: int) -> tuple:
        off = i / n < self.start or (i + 1) / n > self.end
        return (self.conditioning_scale * (1.0 - float(off)),)

    def add(self, res: dict, x: Tensor, xin: Tensor, t: Tensor, kw: dict, inputs: tuple, scales: Tensor,
            guidance) -> dict:
        ctx = kw["encoder_hidden_states"]
        te = kw["text_embeds"] if "text_embeds" in kw else None
        ids = kw["time_ids"] if "time_ids" in kw else None
        if self.guess_mode and guidance.copies > 1:
            b = x.shape[0]
            down, mid = self.net(x, t, guidance.conditional(ctx, b), inputs[0], scales[0],
                                 None if te is None else guidance.conditional(te, b),
                                 None if ids is None else guidance.conditional(ids, b), True)
            padded = ()
            for r in down:
                padded = padded + (guidance.pad_conditional(r),)
            down, mid = padded, guidance.pad_conditional(mid)
        else:
            down, mid = self.net(xin, t, ctx, inputs[0], scales[0], te, ids, self.guess_mode)
        out = {}
        for name in res:
            out[name] = res[name]
        out[DOWN] = _add(res[DOWN] if DOWN in res else None, down)
        out[MID] = _add(res[MID] if MID in res else None, mid)
        return out


class Adapter(Piece):
    """T2I-Adapter features (computed once, scaled, batched like the expanded UNet input) added inside the UNet's
    down blocks for the first `calls` net calls (diffusers' Adapter pipelines; the XL pipeline's
    adapter_conditioning_factor), gated by a 0 / 1 float per call (adding zeros leaves the UNet's sums as they
    are)."""

    role = "residual"
    n_scales = 1

    def __init__(self, features: tuple, calls: int):
        self.inputs = (tuple(features),)
        self.calls = int(calls)
        self.key = ("adapter", len(features))

    def scales(self, i: int, n: int) -> tuple:
        return (float(i < self.calls),)

    def add(self, res: dict, x: Tensor, xin: Tensor, t: Tensor, kw: dict, inputs: tuple, scales: Tensor,
            guidance) -> dict:
        gated = ()
        for f in inputs[0]:
            gated = gated + (f * scales[0].astype(f.dtype),)
        out = {}
        for name in res:
            out[name] = res[name]
        out[INTRA] = _add(res[INTRA] if INTRA in res else None, gated)
        return out

