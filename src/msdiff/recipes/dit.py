"""Class-conditional latent sampling with a DiT (diffusers' DiTPipeline; Peebles & Xie 2023).

Classifier-free guidance follows DiTPipeline: with guidance_scale > 1 the net sees the batch twice (class labels,
then the null class), only the first in_channels output channels (eps) are guided, and a learned-sigma output
(out_channels = 2 x in_channels) is dropped before the sampler step. The latents are unit-variance noise, not
scaled by the scheduler's init_noise_sigma (as diffusers). All noise comes from `noise` (recorded arrays or a
callable(shape), as `steps.NoiseSource`) or numpy seeded by `seed`, in diffusers' draw order.
"""
import weakref
from typing import Callable, Optional, Sequence, Union

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..samplers import sample_steps
from .steps import NoiseSource, finish, initial_noise
from .unconditional import resolve_sampler

_DEFAULT_SCHEDULER = {"_class_name": "DDIMScheduler"}
_JIT = weakref.WeakKeyDictionary()


def transformer_of(components):
    """The pipeline's DiT: `components.transformer`, or `extra["transformer"]` of `msdiff.load_pipeline`."""
    net = getattr(components, "transformer", None) or getattr(components, "extra", {}).get("transformer")
    if net is None:
        raise ValueError("the components have no 'transformer' (a DiTTransformer2DModel)")
    return net


def label_ids(components, class_labels: Union[int, str, Sequence]) -> np.ndarray:
    """Class ids [b] from ints or ImageNet-style names (model_index.json's `id2label`, as DiTPipeline.get_label_ids)."""
    if isinstance(class_labels, (int, str, np.integer)):
        labels = [class_labels]
    else:
        labels = class_labels.asnumpy().reshape(-1).tolist() if isinstance(class_labels, Tensor) else list(class_labels)
    if any(isinstance(v, str) for v in labels):
        id2label = (getattr(components, "options", None) or {}).get("id2label")
        if not id2label:
            raise ValueError("class labels given as names, but the pipeline has no id2label: pass class ids")
        names = {name.strip(): int(k) for k, v in id2label.items() for name in v.split(",")}
        unknown = [v for v in labels if isinstance(v, str) and v not in names]
        if unknown:
            raise ValueError(f"unknown class label name(s) {unknown}; see components.options['id2label']")
        labels = [names[v] if isinstance(v, str) else v for v in labels]
    return np.asarray(labels, np.int64).reshape(-1)


def guided_net(net, guided: bool, jit: bool) -> Callable:
    """(x, t, labels, null_labels, scale) -> the sampler's model output, guided the DiTPipeline way when `guided`."""
    channels = net.config.in_channels
    learned_sigma = net.config.output_channels == 2 * channels

    def call(x, t, y, y_null, scale):
        if not guided:
            out = net(x, t, y).astype(ms.float32)
            return out[:, :channels] if learned_sigma else out
        out = net(mops.concat([x, x], axis=0), t, mops.concat([y, y_null], axis=0)).astype(ms.float32)
        cond, uncond = mops.split(out[:, :channels], x.shape[0], axis=0)
        return uncond + scale * (cond - uncond)

    if not jit:
        return call
    per_net = _JIT.setdefault(net, {})
    if guided not in per_net:
        per_net[guided] = ms.jit(call)
    return per_net[guided]


def dit(components, class_labels, *, guidance_scale: float = 4.0, num_inference_steps: int = 50,
        seed: Optional[int] = None, noise=None, latents: Optional[Float[Tensor, "b c h w"]] = None, sampler=None,
        callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None, mode: str = "pynative",
        output_type: str = "pil"):
    """Images of the given classes (ints, or names found in `id2label`) from a DiT pipeline (diffusers' DiTPipeline).

    sampler: None (the pipeline's scheduler), a scheduler class name / config dict, or a Sampler.
    callback(step, latents) runs after every net call; returning True stops early. output_type "latent" returns
    the final latents. The null class is num_embeds_ada_norm (diffusers writes the literal 1000, the same for
    every released DiT).
    """
    if mode not in ("pynative", "graph"):
        raise ValueError(f"mode must be 'pynative' or 'graph', got {mode!r}")
    net = transformer_of(components)
    cfg = net.config
    if cfg.output_channels not in (cfg.in_channels, 2 * cfg.in_channels):
        raise ValueError(f"dit: out_channels {cfg.output_channels} is neither in_channels ({cfg.in_channels}) nor "
                         f"twice it (learned sigma); DiTPipeline has no rule for that output")
    labels = label_ids(components, class_labels)
    if labels.size == 0 or labels.min() < 0 or labels.max() >= cfg.num_embeds_ada_norm:
        raise ValueError(f"class_labels must lie in [0, {cfg.num_embeds_ada_norm}); got {labels.tolist()}")
    b = labels.size
    shape = (b, cfg.in_channels, cfg.sample_size, cfg.sample_size)
    noise_src = noise if isinstance(noise, NoiseSource) else NoiseSource(seed, noise)
    x = initial_noise(shape, noise_src, latents)
    scheduler = getattr(components, "scheduler", None) or _DEFAULT_SCHEDULER
    smp = resolve_sampler(scheduler, sampler)
    schedule = smp.schedule(num_inference_steps)
    guided = guidance_scale > 1
    y = Tensor(labels.astype(np.int32))
    y_null = Tensor(np.full((b,), cfg.num_embeds_ada_norm, np.int32))
    scale = Tensor(np.float32(guidance_scale))
    call = guided_net(net, guided, mode == "graph")

    def model(x_in: Float[Tensor, "b c h w"], t: Tensor) -> Tensor:
        return call(x_in, t, y, y_null, scale)

    def step_noise(i: int) -> Tensor:
        # diffusers steps the doubled batch, drawing noise for both halves; the first half is the images'
        return noise_src.draw((2 * b,) + shape[1:])[:b] if guided else noise_src.draw(shape)

    for i, x in sample_steps(smp, schedule, model, x, step_noise, jit=mode == "graph"):
        if callback is not None and callback(i, x):
            break
    return finish(components, x, output_type, vae_dtype="float32")
