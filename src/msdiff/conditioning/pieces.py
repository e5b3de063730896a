"""Small conditioning pieces: what the net sees besides the sample, and what happens around its call.

Every piece has `inputs` (Tensors read at every call), `n_scales` floats per call from `scales(i, n)`, a static
`key`, and a `role` that says where it acts: "inputs" (net keywords), "residual" (ControlNet / adapter
additions, in control.py), "channels" (extra input channels), "output" (the net output before guidance), "post"
(the sampler's result, inside the same step).
"""
from typing import Optional

import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops

from ..samplers import Schedule


class Piece:
    """Defaults for a piece with no inputs and no per-call floats."""

    role = "inputs"
    inputs = ()
    n_scales = 0

    def scales(self, i: int, n: int) -> tuple:
        return ()


class NetInputs(Piece):
    """Keyword tensors of the net call (encoder_hidden_states, text_embeds, time_ids, timestep_cond, class_labels,
    encoder_attention_mask, ...), already batched as the guidance expands the sample. None values are not
    passed."""

    def __init__(self, **tensors):
        self.names = tuple(k for k, v in tensors.items() if v is not None)
        self.inputs = tuple(_tensor(tensors[k], k) for k in self.names)
        self.key = ("inputs",) + self.names

    def kwargs(self, inputs: tuple) -> dict:
        return dict(zip(self.names, inputs))

    def get(self, name: str) -> Optional[Tensor]:
        """The tensor given for `name` (None if not given)."""
        return self.inputs[self.names.index(name)] if name in self.names else None


class ExtraChannels(Piece):
    """Tensors concatenated to the (guidance-expanded) net input on the channel axis: an inpainting UNet's mask and
    masked-image latents, InstructPix2Pix's image latents, a depth map. Fewer rows than the expanded batch are
    tiled as whole-batch copies."""

    role = "channels"

    def __init__(self, extra: Float[Tensor, "r c h w"]):
        self.inputs = (_tensor(extra, "extra channels"),)
        self.key = ("channels",)

    def apply(self, xin: Tensor, inputs: tuple) -> Tensor:
        extra = inputs[0].astype(xin.dtype)
        copies = xin.shape[0] // extra.shape[0]
        if copies > 1:
            extra = ops.concat([extra] * copies, axis=0)
        return ops.concat([xin, extra], axis=1)


class TakeChannels(Piece):
    """Keep the first `channels` output channels (a learned-sigma net's eps half), before guidance."""

    role = "output"

    def __init__(self, channels: int):
        self.channels = int(channels)
        self.key = ("take", self.channels)

    def apply(self, out: Tensor) -> Tensor:
        return out[:, :self.channels]


class Blend(Piece):
    """Inpainting with a plain UNet: after each step the known region is replaced by the image latents noised to the
    next call's level (diffusers' 4-channel inpainting), mask 1 = repaint. Runs inside the compiled step."""

    role = "post"
    n_scales = 2

    def __init__(self, image_latents: Tensor, noise: Tensor, mask: Tensor, schedule: Schedule):
        self.inputs = (image_latents, noise, mask)
        self.levels = np.asarray(schedule.noise_level, np.float32)
        self.key = ("blend",)

    def scales(self, i: int, n: int) -> tuple:
        if i + 1 >= n:
            return (1.0, 0.0)
        a, b = self.levels[i + 1]
        return (float(a), float(b))

    def apply(self, x: Tensor, inputs: tuple, scales: Tensor) -> Tensor:
        image, noise, mask = inputs
        proper = scales[0] * image + scales[1] * noise
        return (1 - mask) * proper + mask * x


def _tensor(value, name: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        return Tensor(value)
    raise TypeError(f"{name}: expected a Tensor, got {type(value).__name__}")
