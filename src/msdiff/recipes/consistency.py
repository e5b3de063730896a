"""Consistency-model sampling of a UNet2DModel (diffusers' ConsistencyModelPipeline with
CMStochasticIterativeScheduler; Song et al. 2023, Algorithm 1), one- or multi-step, class labels optional.

All noise (initial image unless `latents` is given, then one draw per step when there is more than one
step) comes from `noise` (recorded arrays or a callable(shape), as `steps.NoiseSource`) or numpy seeded
by `seed`, in diffusers' draw order.
"""
from typing import Callable, Optional, Sequence

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor

from ..samplers import FiniteTracker, from_config, noise_source, resolve_sampler
from .family import Family, diffusers_names
from .unconditional import _unet_and_scheduler, to_images, unconditional_steps

_SCHEDULER = "CMStochasticIterativeScheduler"


@diffusers_names
def consistency(components_or_unet, *, batch_size: int = 1, num_inference_steps: Optional[int] = None,
                timesteps: Optional[Sequence[int]] = None, class_labels: Optional[Sequence[int]] = None,
                seed: Optional[int] = None, latents: Optional[Float[Tensor, "b c h w"]] = None, noise=None,
                output_type: str = "pil", mode: Optional[str] = None,
                callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None):
    """Images from a consistency-model UNet2DModel (diffusers' ConsistencyModelPipeline).

    `latents` are unit-variance noise, scaled by the scheduler's sigma_max as diffusers does. Class-conditional
    models without `class_labels` get labels drawn uniformly by numpy from `seed` (diffusers draws them with
    torch's global RNG, so pass labels for reproducible comparisons). callback(step, sample) runs after every
    net call; returning True stops early. `timesteps` are explicit descending training timesteps (e.g. [22, 0]),
    exclusive with `num_inference_steps` (which defaults to 1 when neither is given).
    """
    if num_inference_steps is not None and timesteps is not None:
        raise ValueError("consistency: pass only one of `num_inference_steps` or `timesteps`")
    unet, _ = _unet_and_scheduler(components_or_unet)
    scheduler = getattr(components_or_unet, "scheduler", None) or {"_class_name": _SCHEDULER}
    if scheduler.get("_class_name") != _SCHEDULER:
        raise ValueError(f"consistency: the scheduler must be {_SCHEDULER}, got {scheduler.get('_class_name')!r}")
    if timesteps is None:
        num_inference_steps = 1 if num_inference_steps is None else num_inference_steps
        if num_inference_steps < 1 or num_inference_steps > scheduler.get("num_train_timesteps", 40):
            raise ValueError(f"num_inference_steps must lie in [1, num_train_timesteps]; got {num_inference_steps}")
        sampler = resolve_sampler(scheduler)
    else:
        sampler = from_config(dict(scheduler, _class_name=_SCHEDULER), timesteps=tuple(timesteps))
        num_inference_steps = len(timesteps)
    cfg = unet.config
    if cfg.num_class_embeds and class_labels is None:
        class_labels = np.random.default_rng(seed).integers(0, cfg.num_class_embeds, batch_size)
    noise = noise_source(seed, noise)
    if latents is not None:
        sigma_max = sampler.schedule(num_inference_steps).init_noise_sigma
        latents = latents if isinstance(latents, Tensor) else Tensor(np.asarray(latents, np.float32))
        latents = latents.astype(ms.float32) * float(sigma_max)
    x, tracker = latents, FiniteTracker()
    for i, x in unconditional_steps(unet, batch_size=batch_size, num_inference_steps=num_inference_steps,
                                    class_labels=class_labels, latents=latents, sampler=sampler, noise=noise,
                                    mode=mode, tracker=tracker):
        if callback is not None and callback(i, x):
            break
    tracker.check(x)
    return to_images(x, output_type)


def _cli(args, components, kwargs: dict) -> tuple:
    if "class_labels" in kwargs:
        kwargs["class_labels"] = [kwargs["class_labels"]]
    return consistency, kwargs


FAMILIES = (Family("consistency", consistency, ("ConsistencyModelPipeline",), {"class_label": "class_labels"},
                   steps=1, prepare=_cli, help="consistency sampling (steps 1; --class-label, default drawn from "
                                               "--seed)"),)
