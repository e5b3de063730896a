"""THE sampling loop: `sample(model, x, schedule, sampler, noise, callback) -> x`, in k-diffusion's shape.

A `Model` is what the loop calls at every step: a pure function fn(x_in, t, inputs, scales) -> net output, the
Tensors it reads (`inputs`, the same at every call, so new values never recompile), the per-call floats it reads
(`scales(i, n)`: guidance scales, ControlNet windows, adapter gates, blending levels) and an optional `post`
function applied to the sampler's result inside the same step (inpainting's re-masking). `msdiff.conditioning`
builds Models from nets; a plain callable model(x_in, t) works too. In graph mode the whole step (net call,
guidance, sampler update, post) is one `mindspore.jit` graph per model key, sampler and shape, kept in one cache.
Random noise is drawn outside the compiled step, in order, from a `NoiseSource`. Every step records whether its
result is finite; `sample` raises NonFiniteError naming the first bad step instead of returning inf/nan.
"""
from dataclasses import dataclass
from typing import Callable, Hashable, Iterator, Optional, Tuple

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops

from ..budget import check_step, guidance_copies
from ..settings import progress_bar, resolve_mode
from .core import Sampler, Schedule


class NonFiniteError(FloatingPointError):
    """A run produced inf/nan; the message names the first stage where it appeared."""


class FiniteTracker:
    """Cheap non-finite bookkeeping: one isfinite flag per stage, read only when the end result is bad."""

    def __init__(self):
        self.stages = []

    def add(self, name: str, x: Tensor) -> None:
        """Record whether x (the output of stage `name`) is all finite (no host sync here)."""
        self.stages.append((name, ops.isfinite(x).all()))

    def first_bad(self) -> Optional[str]:
        """The first recorded stage whose output was not finite, or None."""
        return next((name for name, ok in self.stages if not bool(ok)), None)

    def check(self, x: Tensor, what: str = "the final latents") -> None:
        """NonFiniteError naming the first non-finite stage if x holds inf/nan."""
        if bool(ops.isfinite(x).all()):
            return
        first = self.first_bad() or what
        raise NonFiniteError(f"non-finite values (inf/nan) first appeared in {first}. In float16 this is "
                             f"usually an overflow: load the pipeline with dtype='float32', keep the VAE in "
                             f"float32 (vae_dtype='float32'), or lower guidance_scale; NaN or huge values in the "
                             f"weights or config do the same; msdiff.diagnose.first_nonfinite(net, ...) finds the "
                             f"block")


def _no_scales(i: int, n: int) -> tuple:
    return ()


@dataclass(frozen=True, eq=False)
class Model:
    """A net call as the loop sees it (see the module docstring). `key` names everything static in fn (with
    `owner`, the net the compiled graph belongs to)."""

    fn: Callable
    inputs: tuple = ()
    scales: Callable[[int, int], tuple] = _no_scales
    post: Optional[Callable] = None
    key: Hashable = None
    owner: object = None


def as_model(model) -> Model:
    """A Model, or a plain callable model(x_in, t) -> out wrapped as one."""
    if isinstance(model, Model):
        return model
    if not callable(model):
        raise TypeError(f"model must be an msdiff Model or a callable model(x, t), got {type(model).__name__}")

    def fn(x, t, inputs, scales):
        return model(x, t)

    return Model(fn, key=("callable",), owner=model)


# owner -> {key: compiled step}. Strong references on purpose: the compiled steps and the nets they close over stay
# alive for the process, so no freed object's id can be reused by a new closure while MindSpore still caches a graph
# for it (the suspected cause of two intermittent graph-mode failures seen in long test processes: a net called with
# another model's keywords).
_COMPILED = {}


def _step_fn(model: Model, sampler: Sampler) -> Callable:
    """The pure per-call function (x, t, div, row, noise, state, inputs, scales) -> (x_next, state)."""
    fn, post, sampler_step = model.fn, model.post, sampler.step

    def step(x, t, div, row, noise, state, inputs, scales):
        out = fn(x / div, t, inputs, scales).astype(ms.float32)
        x_next, state = sampler_step(x, out, state, row, noise)
        if post is not None:
            x_next = post(x_next, inputs, scales)
        return x_next, state

    return step


def _structure(owner) -> Hashable:
    """The owner's parameter names: loading LoRA or IP-Adapter layers into a net changes them, and a step compiled
    before would silently leave the new layers out."""
    params = getattr(owner, "parameters_and_names", None)
    return hash(tuple(name for name, _ in params())) if callable(params) else None


def _compiled(model: Model, sampler: Sampler) -> Callable:
    owner = model.owner if model.owner is not None else model.fn
    per_owner = _COMPILED.setdefault(owner, {})
    key = (model.key, sampler.step, model.post is not None, _structure(owner))
    if key not in per_owner:
        per_owner[key] = ms.jit(_step_fn(model, sampler))
    return per_owner[key]


def _mutable(values: tuple) -> tuple:
    """A tuple as a mutable jit input, so new values don't recompile (mutable(()) fails: keep it plain)."""
    return ms.mutable(values) if values else values


def _draw(noise, shape: tuple) -> Tensor:
    if noise is None:
        raise ValueError("this sampler draws noise at every step: pass a NoiseSource (or seed=) as `noise`")
    return noise.draw(shape) if hasattr(noise, "draw") else Tensor(np.asarray(noise(shape), np.float32))


def sample_steps(model, x: Float[Tensor, "b ..."], schedule: Schedule, sampler: Sampler, noise=None, *,
                 mode: Optional[str] = None, tracker: Optional[FiniteTracker] = None
                 ) -> Iterator[Tuple[int, Float[Tensor, "b ..."]]]:
    """Run the sampler over `schedule`, yielding (call index, sample) after every net call.

    noise: an object with draw(shape) (msdiff.samplers.NoiseSource) or a callable(shape), used only at the calls
    where the sampler needs fresh noise. mode: "graph" / "pynative", None for msdiff.settings.default_mode().
    """
    mode = resolve_mode(mode)
    model = as_model(model)
    step = _compiled(model, sampler) if mode == "graph" else _step_fn(model, sampler)
    wrap = _mutable if mode == "graph" else tuple
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x, np.float32))
    x = x.astype(ms.float32)
    check_step(model.owner, x.shape, mode, guidance_copies(x.shape, model.inputs))  # before the first step
    state = sampler.init_state(x)
    rows, n, zeros = schedule.rows(), len(schedule), None
    inputs = wrap(tuple(model.inputs))
    for i in range(n):
        nz = None
        if sampler.stochastic:
            if schedule.needs_noise[i]:
                nz = _draw(noise, x.shape)
            else:
                zeros = ops.zeros_like(x) if zeros is None else zeros
                nz = zeros
        div = Tensor(np.float32(schedule.input_div[i]))
        scales = Tensor(np.asarray(tuple(model.scales(i, n)) or (0.0,), np.float32))
        x, state = step(x, schedule.timestep(i), div, rows[i], nz, wrap(tuple(state)), inputs, scales)
        if tracker is not None:
            tracker.add(f"denoising step {i} (timestep {float(schedule.timesteps[i]):g})", x)
        yield i, x


def sample(model, x: Float[Tensor, "b ..."], schedule: Schedule, sampler: Sampler, noise=None,
           callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None, *, mode: Optional[str] = None,
           tracker: Optional[FiniteTracker] = None) -> Float[Tensor, "b ..."]:
    """The final sample of `sample_steps`; callback(i, x) after each call, returning True stops early.

    Shows a progress bar where msdiff.settings says so (a terminal or notebook, unless disabled). Raises
    NonFiniteError (naming the first non-finite step) if the result holds inf/nan.
    """
    tracker = FiniteTracker() if tracker is None else tracker
    steps = sample_steps(model, x, schedule, sampler, noise, mode=mode, tracker=tracker)
    return run_steps(steps, len(schedule), callback, tracker, x)


def run_steps(steps: Iterator[Tuple[int, Tensor]], total: int, callback=None, tracker: Optional[FiniteTracker] = None,
              x: Optional[Tensor] = None, progress: Optional[bool] = None, desc: str = "denoising") -> Tensor:
    """Drive a (call index, sample) iterator to its end: progress bar (msdiff.settings; progress=True / False forces
    it), callback(i, x) after each call (True stops early), the tracker's non-finite check on the result."""
    bar = progress_bar(total, desc, enabled=progress)
    try:
        for i, x in steps:
            if bar is not None:
                bar.update(1)
            if callback is not None and callback(i, x):
                break
    finally:
        if bar is not None:
            bar.close()
    if tracker is not None:
        tracker.check(x)
    return x
