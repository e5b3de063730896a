"""Class-conditional latent sampling with a DiT (diffusers' DiTPipeline; Peebles & Xie 2023).

Classifier-free guidance follows DiTPipeline: with guidance_scale > 1 the net sees the batch twice (class labels,
then the null class), only the first in_channels output channels (eps) are guided, and a learned-sigma output
(out_channels = 2 x in_channels) is dropped before the sampler step. The latents are unit-variance noise, not
scaled by the scheduler's init_noise_sigma (as diffusers). All noise comes from `noise` (recorded arrays or a
callable(shape), as `steps.NoiseSource`) or numpy seeded by `seed`, in diffusers' draw order.
"""
from typing import Callable, Optional, Sequence, Union

import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..conditioning import CFG, NetInputs, TakeChannels, compose
from ..samplers import NoiseSource, noise_source, resolve_sampler, sample
from .family import Family, diffusers_names
from .latents import finish, initial_noise

_DEFAULT_SCHEDULER = {"_class_name": "DDIMScheduler"}


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


def dit_model(net, labels: np.ndarray, guidance_scale: float):
    """The DiT as the loop's Model: class labels, the eps half of a learned-sigma output, and DiTPipeline's
    guidance (labels first, then the null class; only eps guided)."""
    cfg = net.config
    y = Tensor(labels.astype(np.int32))
    pieces = [TakeChannels(cfg.in_channels)] if cfg.output_channels == 2 * cfg.in_channels else []
    if guidance_scale <= 1:
        return compose(net, NetInputs(class_labels=y), *pieces)
    y_null = Tensor(np.full(labels.shape, cfg.num_embeds_ada_norm, np.int32))
    return compose(net, NetInputs(class_labels=mops.concat([y, y_null], axis=0)), *pieces,
                   guidance=CFG(guidance_scale, uncond_first=False))


class DoubledNoise:
    """Step noise as DiTPipeline draws it under guidance: for both halves of the doubled batch, the first half
    kept."""

    def __init__(self, source: NoiseSource):
        self.source = source

    def draw(self, shape) -> Tensor:
        return self.source.draw((2 * shape[0],) + tuple(shape[1:]))[:shape[0]]


@diffusers_names
def dit(components, class_labels, *, guidance_scale: float = 4.0, num_inference_steps: int = 50,
        seed: Optional[int] = None, noise=None, latents: Optional[Float[Tensor, "b c h w"]] = None, sampler=None,
        callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None, mode: Optional[str] = None,
        output_type: str = "pil"):
    """Images of the given classes (ints, or names found in `id2label`) from a DiT pipeline (diffusers' DiTPipeline).

    sampler: None (the pipeline's scheduler), a scheduler class name / config dict, or a Sampler.
    callback(step, latents) runs after every net call; returning True stops early. output_type "latent" returns
    the final latents. The null class is num_embeds_ada_norm (diffusers writes the literal 1000, the same for
    every released DiT).
    """
    net = transformer_of(components)
    cfg = net.config
    if cfg.output_channels not in (cfg.in_channels, 2 * cfg.in_channels):
        raise ValueError(f"dit: out_channels {cfg.output_channels} is neither in_channels ({cfg.in_channels}) nor "
                         f"twice it (learned sigma); DiTPipeline has no rule for that output")
    labels = label_ids(components, class_labels)
    if labels.size == 0 or labels.min() < 0 or labels.max() >= cfg.num_embeds_ada_norm:
        raise ValueError(f"class_labels must lie in [0, {cfg.num_embeds_ada_norm}); got {labels.tolist()}")
    shape = (labels.size, cfg.in_channels, cfg.sample_size, cfg.sample_size)
    noise_src = noise_source(seed, noise)
    x = initial_noise(shape, noise_src, latents)
    smp = resolve_sampler(getattr(components, "scheduler", None), sampler, default=_DEFAULT_SCHEDULER)
    schedule = smp.schedule(num_inference_steps)
    step_noise = DoubledNoise(noise_src) if guidance_scale > 1 else noise_src
    x = sample(dit_model(net, labels, guidance_scale), x, schedule, smp, step_noise, callback, mode=mode)
    return finish(components, x, output_type, vae_dtype="float32")


def _cli(args, components, kwargs: dict) -> tuple:
    kwargs["class_labels"] = [kwargs["class_labels"]]
    return dit, kwargs


FAMILIES = (Family("dit", dit, ("DiTPipeline",), {"class_label": "class_labels", "guidance": "guidance_scale",
                                                   "sampler": "sampler"}, ("class_label",), steps=50, prepare=_cli,
                   help="--class-label required; --guidance (default 4), --sampler (steps 50)"),)
