"""Guidance: how the batch is expanded before the net call and how the copies are combined after it.

Each guidance holds its scales as per-call floats (or, for a per-frame / per-sample scale, a Tensor input), so a
new scale never recompiles the step.
"""
from typing import Optional

import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops

from ..samplers import combine_guidance


def _split(out: Tensor, b: int, parts: int) -> tuple:
    return ops.split(out, b, axis=0) if parts > 1 else (out,)


class NoGuidance:
    """The net runs once on the batch; its output goes to the sampler as it is."""

    copies = 1
    inputs = ()
    n_scales = 0
    key = ("none",)

    def scales(self, i: int, n: int) -> tuple:
        return ()

    def expand(self, x: Tensor) -> Tensor:
        return x

    def conditional(self, t: Tensor, b: int) -> Tensor:
        """The rows of a batched conditioning tensor that belong to the conditional copy."""
        return t

    def pad_conditional(self, r: Tensor) -> Tensor:
        """A result computed on the conditional rows only, padded with zeros to every copy."""
        return r

    def combine(self, out: Tensor, b: int, inputs: tuple, scales: Tensor) -> Tensor:
        return out


class CFG(NoGuidance):
    """Classifier-free guidance uncond + s * (cond - uncond) (Ho & Salimans 2022), optionally rescaled (Lin et al.
    2023, sec. 3.4). `scale` is a float, or a Tensor broadcast against the output (per sample / per frame, as Stable
    Video Diffusion). The conditioning tensors are batched [uncond; cond] (diffusers), or [cond; uncond] with
    uncond_first=False (DiT)."""

    copies = 2

    def __init__(self, scale, rescale: float = 0.0, uncond_first: bool = True):
        self.tensor_scale = isinstance(scale, (Tensor, np.ndarray))
        if not self.tensor_scale and not np.isfinite(float(scale)):
            raise ValueError(f"guidance_scale must be a finite number, got {scale!r}")
        if not (np.isfinite(float(rescale)) and 0.0 <= float(rescale) <= 1.0):
            raise ValueError(f"guidance_rescale must be in [0, 1], got {rescale!r}")
        self.scale = Tensor(np.asarray(scale.asnumpy() if isinstance(scale, Tensor) else scale, np.float32)) \
            if self.tensor_scale else float(scale)
        self.rescale, self.uncond_first = float(rescale), bool(uncond_first)
        self.inputs = (self.scale,) if self.tensor_scale else ()
        self.n_scales = 0 if self.tensor_scale else 1
        self.key = ("cfg", self.rescale, self.uncond_first, self.tensor_scale)

    def scales(self, i: int, n: int) -> tuple:
        return () if self.tensor_scale else (self.scale,)

    def expand(self, x: Tensor) -> Tensor:
        return ops.concat([x, x], axis=0)

    def conditional(self, t: Tensor, b: int) -> Tensor:
        return t[b:] if self.uncond_first else t[:b]

    def pad_conditional(self, r: Tensor) -> Tensor:
        zeros = ops.zeros_like(r)
        return ops.concat([zeros, r] if self.uncond_first else [r, zeros], axis=0)

    def combine(self, out: Tensor, b: int, inputs: tuple, scales: Tensor) -> Tensor:
        first, second = _split(out, b, 2)
        uncond, cond = (first, second) if self.uncond_first else (second, first)
        scale = inputs[0] if self.tensor_scale else scales[0]
        return combine_guidance(uncond, cond, scale, self.rescale)


class Pix2Pix(NoGuidance):
    """InstructPix2Pix's three-way guidance (Brooks et al. 2023, eq. 3): the batch is (text + image, image only,
    neither), combined as uncond + s_T * (text - image) + s_I * (image - uncond)."""

    copies = 3
    n_scales = 2
    key = ("pix2pix",)

    def __init__(self, scale: float, image_scale: float):
        for name, v in (("guidance_scale", scale), ("image_guidance_scale", image_scale)):
            if not np.isfinite(float(v)):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        self.scale, self.image_scale = float(scale), float(image_scale)

    def scales(self, i: int, n: int) -> tuple:
        return (self.scale, self.image_scale)

    def expand(self, x: Tensor) -> Tensor:
        return ops.concat([x, x, x], axis=0)

    def conditional(self, t: Tensor, b: int) -> Tensor:
        raise ValueError("conditioning that needs the conditional rows only (ControlNet guess mode) does not run "
                         "with InstructPix2Pix guidance")

    def combine(self, out: Tensor, b: int, inputs: tuple, scales: Tensor) -> Tensor:
        text, image, uncond = _split(out, b, 3)
        return uncond + scales[0] * (text - image) + scales[1] * (image - uncond)


def cfg_batch(negative: Optional[Tensor], positive: Float[Tensor, "b ..."]) -> Float[Tensor, "b2 ..."]:
    """[negative; positive] along the batch (diffusers' classifier-free guidance layout); positive alone if no
    negative."""
    return positive if negative is None else ops.concat([negative, positive], axis=0)
