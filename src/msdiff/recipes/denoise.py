"""The denoising loop of the recipes: a guided UNet step (net call, guidance, sampler update) run per call.

`Denoiser` holds what the UNet sees besides the sample (text embeddings, SD-XL's pooled embeds and
time ids, LCM's timestep_cond, extra input channels for inpainting / InstructPix2Pix, a ControlNet
run in the same step, T2I-Adapter features) and how its outputs are combined (`guidance`: "none",
"cfg" or "pix2pix"). `denoise_steps` runs a sampler schedule with it, in PyNative or with the whole
step compiled by `mindspore.jit` (mode="graph", one graph per UNet, sampler, guidance kind and shape,
reused across steps and calls). Random noise is drawn outside the compiled step.
"""
import dataclasses
import weakref
from typing import Callable, Iterator, NamedTuple, Optional, Tuple

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..samplers import Sampler, Schedule, combine_guidance, from_config, img2img_schedule
from .steps import FiniteTracker, NoiseSource

GUIDANCE = ("none", "cfg", "pix2pix")
_COPIES = {"none": 1, "cfg": 2, "pix2pix": 3}
_COND = ("context", "text_embeds", "time_ids", "timestep_cond", "extra")


class Control(NamedTuple):
    """A ControlNet called inside the guided step on the UNet's sample, timestep and conditioning; its residuals
    are added to the UNet's skips (diffusers' StableDiffusion[XL]ControlNetPipeline). `image`: the control image
    batched like the UNet input, or like the conditional half alone in guess mode with cfg (then the
    unconditional rows get zero residuals)."""

    net: Callable
    image: Tensor
    conditioning_scale: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    guess_mode: bool = False

    def scale(self, i: int, n: int) -> float:
        """The conditioning scale of call i of n: 0 outside [guidance_start, guidance_end] (diffusers' keep)."""
        off = i / n < self.guidance_start or (i + 1) / n > self.guidance_end
        return self.conditioning_scale * (1.0 - float(off))


class Adapter(NamedTuple):
    """T2I-Adapter features (computed once, scaled, batched like the UNet input) added inside the UNet's down
    blocks for the first `calls` net calls (diffusers' StableDiffusion[XL]AdapterPipeline; the XL pipeline's
    adapter_conditioning_factor). They enter the compiled step as inputs, gated by a 0 / 1 scale per call."""

    features: tuple
    calls: int

    def gate(self, i: int) -> float:
        """1 while call i still uses the features, else 0 (adding zeros leaves the UNet's sums unchanged)."""
        return float(i < self.calls)


class Denoiser(NamedTuple):
    """UNet conditioning for every net call, batched as the guidance kind needs (uncond rows first for cfg;
    (text, image, uncond) for pix2pix). `extra` is concatenated to the scaled sample on the channel axis."""

    unet: Callable
    context: Tensor
    guidance: str = "cfg"
    guidance_scale: float = 7.5
    guidance_rescale: float = 0.0
    image_guidance_scale: float = 1.0
    text_embeds: Optional[Tensor] = None
    time_ids: Optional[Tensor] = None
    timestep_cond: Optional[Tensor] = None
    extra: Optional[Tensor] = None
    control: Optional[Control] = None
    adapter: Optional[Adapter] = None


def resolve_sampler(components, sampler=None) -> Sampler:
    """A Sampler from: None (the checkpoint's scheduler config), a Sampler, a scheduler config dict, or a name
    (a diffusers scheduler class name such as "EulerDiscreteScheduler", built on the checkpoint's config)."""
    if isinstance(sampler, Sampler):
        return sampler
    if sampler is None:
        if components.scheduler is None:
            raise ValueError("the pipeline has no scheduler config: pass sampler=")
        return from_config(components.scheduler)
    if isinstance(sampler, dict):
        return from_config(sampler)
    if isinstance(sampler, str):
        from ..samplers import SAMPLERS

        names = {k.lower(): k for k in SAMPLERS}
        names.update({k.lower().replace("discretescheduler", "").replace("scheduler", ""): k for k in SAMPLERS})
        key = sampler.lower().replace("_", "").replace("-", "")
        if key not in names:
            raise ValueError(f"unknown sampler {sampler!r}; known: {sorted(set(names))}")
        return from_config(dict(components.scheduler or {}, _class_name=names[key]))
    raise TypeError(f"sampler must be None, a name, a scheduler config dict or a Sampler, got {type(sampler)}")


def _end_cutoff(sampler: Sampler, fraction: float) -> int:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"denoising_start / denoising_end must be in (0, 1), got {fraction!r}")
    t = sampler.num_train_timesteps
    return int(round(t - fraction * t))


def truncate(schedule: Schedule, stop: int) -> Schedule:
    """The first `stop` calls of a schedule (their coefficients unchanged)."""
    cut = {f: getattr(schedule, f)[:stop] for f in ("timesteps", "input_div", "coefs", "needs_noise", "noise_level")}
    return dataclasses.replace(schedule, _rows=(), **cut)


def make_schedule(sampler: Sampler, num_inference_steps: int, strength: float = 1.0,
                  denoising_start: Optional[float] = None, denoising_end: Optional[float] = None) -> Schedule:
    """Calls of a run: img2img `strength` truncation, or SD-XL's denoising_start / denoising_end hand-off."""
    if denoising_start is not None:
        full = sampler.schedule(num_inference_steps)
        cutoff = _end_cutoff(sampler, denoising_start)
        n = int((np.asarray(full.timesteps) < cutoff).sum())
        if sampler.order == 2 and n % 2 == 0:
            n += 1
        schedule = sampler.make_schedule(num_inference_steps, len(full) - n)
    elif strength < 1.0:
        schedule = img2img_schedule(sampler, num_inference_steps, strength)
    else:
        schedule = sampler.schedule(num_inference_steps)
    if denoising_end is not None:
        cutoff = _end_cutoff(sampler, denoising_end)
        schedule = truncate(schedule, int((np.asarray(schedule.timesteps) >= cutoff).sum()))
    if len(schedule) == 0:
        raise ValueError(f"no denoising steps left: num_inference_steps={num_inference_steps}, strength={strength}; "
                         f"raise num_inference_steps or strength")
    return schedule


def _step_fn(d: Denoiser, sampler: Sampler, present: tuple) -> Callable:
    """The pure per-call function (x, t, div, row, noise, state, cond, scales) -> (x_next, state)."""
    unet, kind, rescale, copies = d.unet, d.guidance, d.guidance_rescale, _COPIES[d.guidance]
    sampler_step = sampler.step

    i_ctx, i_te, i_ids, i_tc, i_ex, i_ctl, i_ad = (present.index(k) if k in present else -1
                                                   for k in _COND + ("control", "adapter"))
    cnet = None if d.control is None else d.control.net
    n_ad = 0 if d.adapter is None else len(d.adapter.features)
    i_gate = 2 + (cnet is not None)
    guess = d.control is not None and d.control.guess_mode
    half = guess and copies == 2

    def controlnet(xs, xin, t, cond, scale):
        ctx, te, ids = cond[i_ctx], cond[i_te] if i_te >= 0 else None, cond[i_ids] if i_ids >= 0 else None
        if not half:
            return cnet(xin, t, ctx, cond[i_ctl], scale, te, ids, guess)
        b = xs.shape[0]
        down, mid = cnet(xs, t, ctx[b:], cond[i_ctl], scale, None if te is None else te[b:],
                         None if ids is None else ids[b:], guess)
        padded = ()
        for r in down:
            padded = padded + (mops.concat([mops.zeros_like(r), r], axis=0),)
        return padded, mops.concat([mops.zeros_like(mid), mid], axis=0)

    def step(x, t, div, row, noise, state, cond, scales):
        xs = x / div
        xin = mops.concat([xs] * copies, axis=0) if copies > 1 else xs
        residuals = ()
        if cnet is not None:
            residuals = controlnet(xs, xin, t, cond, scales[2])
        if n_ad:
            gated = ()
            for f in cond[i_ad:i_ad + n_ad]:
                gated = gated + (f * scales[i_gate].astype(f.dtype),)
            residuals = (residuals or (None, None)) + (gated,)
        if i_ex >= 0:
            xin = mops.concat([xin, cond[i_ex]], axis=1)
        out = unet(xin, t, cond[i_ctx], cond[i_te] if i_te >= 0 else None, cond[i_ids] if i_ids >= 0 else None,
                   cond[i_tc] if i_tc >= 0 else None, *residuals).astype(ms.float32)
        if kind == "cfg":
            uncond, text = mops.split(out, x.shape[0], axis=0)
            out = combine_guidance(uncond, text, scales[0], rescale)
        elif kind == "pix2pix":
            text, image, uncond = mops.split(out, x.shape[0], axis=0)
            out = uncond + scales[0] * (text - image) + scales[1] * (image - uncond)
        return sampler_step(x, out, state, row, noise)

    return step


_JIT = weakref.WeakKeyDictionary()


def _mutable(state: tuple) -> tuple:
    """State as a mutable jit input, so new values don't recompile (an empty tuple stays plain: mutable(()) fails)."""
    return ms.mutable(state) if state else state


def _compiled(d: Denoiser, sampler: Sampler, present: tuple) -> Callable:
    per_unet = _JIT.setdefault(d.unet, {})
    control = None if d.control is None else (d.control.net, d.control.guess_mode)
    adapter = None if d.adapter is None else len(d.adapter.features)
    key = (sampler.step, d.guidance, float(d.guidance_rescale), present, control, adapter)
    if key not in per_unet:
        per_unet[key] = ms.jit(_step_fn(d, sampler, present))
    return per_unet[key]


def denoise_steps(denoiser: Denoiser, sampler: Sampler, schedule: Schedule, latents: Float[Tensor, "b c h w"],
                  noise: Optional[NoiseSource] = None, mode: str = "pynative",
                  after_step: Optional[Callable[[int, Tensor], Tensor]] = None,
                  tracker: Optional[FiniteTracker] = None) -> Iterator[Tuple[int, Tensor]]:
    """Run the guided sampler over `schedule`, yielding (call index, latents) after every net call.

    after_step(i, x) -> x post-processes the latents of call i (4-channel inpainting's re-masking).
    """
    if mode not in ("pynative", "graph"):
        raise ValueError(f"mode must be 'pynative' or 'graph', got {mode!r}")
    present = tuple(k for k in _COND if getattr(denoiser, k) is not None)
    cond = tuple(getattr(denoiser, k) for k in present)
    control = denoiser.control
    if control is not None:
        if denoiser.guidance == "pix2pix":
            raise ValueError("a ControlNet runs with guidance 'none' or 'cfg', not 'pix2pix'")
        present, cond = present + ("control",), cond + (control.image,)
    adapter = denoiser.adapter
    if adapter is not None:
        present, cond = present + ("adapter",), cond + tuple(adapter.features)
    base = [denoiser.guidance_scale, denoiser.image_guidance_scale]
    scales = Tensor(np.asarray(base, np.float32))
    if mode == "graph":
        step = _compiled(denoiser, sampler, present)
        wrap = _mutable
    else:
        step = _step_fn(denoiser, sampler, present)
        wrap = tuple
    x = latents.astype(ms.float32)
    state = sampler.init_state(x)
    rows = schedule.rows()
    zeros = None
    for i in range(len(schedule)):
        nz = None
        if sampler.stochastic:
            if schedule.needs_noise[i]:
                if noise is None:
                    raise ValueError(f"sampler {sampler.name!r} draws noise at every step: pass a NoiseSource")
                nz = noise.draw(x.shape)
            else:
                zeros = mops.zeros_like(x) if zeros is None else zeros
                nz = zeros
        div = Tensor(np.float32(schedule.input_div[i]))
        if control is not None or adapter is not None:
            per_call = [] if control is None else [control.scale(i, len(schedule))]
            per_call += [] if adapter is None else [adapter.gate(i)]
            scales = Tensor(np.asarray(base + per_call, np.float32))
        x, state = step(x, schedule.timestep(i), div, rows[i], nz, wrap(tuple(state)), wrap(cond), scales)
        if after_step is not None:
            x = after_step(i, x)
        if tracker is not None:
            tracker.add(f"denoising step {i} (timestep {float(schedule.timesteps[i]):g})", x)
        yield i, x


def denoise(denoiser: Denoiser, sampler: Sampler, schedule: Schedule, latents: Float[Tensor, "b c h w"],
            noise: Optional[NoiseSource] = None, mode: str = "pynative",
            callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None,
            after_step: Optional[Callable[[int, Tensor], Tensor]] = None,
            tracker: Optional[FiniteTracker] = None) -> Float[Tensor, "b c h w"]:
    """The final latents of `denoise_steps`; callback(step, latents) after each call, returning True stops early."""
    x = latents
    for i, x in denoise_steps(denoiser, sampler, schedule, latents, noise, mode, after_step, tracker):
        if callback is not None and callback(i, x):
            break
    return x


def cfg_batch(negative: Optional[Tensor], positive: Tensor) -> Tensor:
    """[negative; positive] along the batch (diffusers' classifier-free guidance layout); positive alone if no
    negative."""
    return positive if negative is None else mops.concat([negative, positive], axis=0)
