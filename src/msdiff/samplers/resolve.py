"""The one way to turn "what sampler" into a Sampler: None, a Sampler, a scheduler config dict, or a name."""
from typing import Optional

from .config import SAMPLERS, from_config
from .core import Sampler


def sampler_names() -> dict:
    """Accepted names -> diffusers scheduler class: the class names and their short forms ("euler", "ddim", ...)."""
    names = {}
    for cls in SAMPLERS:
        low = cls.lower()
        names[low] = cls
        names[low.replace("discretescheduler", "").replace("scheduler", "")] = cls
    return names


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


def resolve_sampler(scheduler: Optional[dict], sampler=None, *, default: Optional[dict] = None,
                    **options) -> Sampler:
    """A Sampler from `sampler`: None (the checkpoint's `scheduler` config, else `default`), a Sampler, a scheduler
    config dict, or a name (a diffusers scheduler class such as "EulerDiscreteScheduler", or a short form such as
    "euler", "ddim", "dpmsolvermultistep") built on the checkpoint's config. `options` (e.g. DDIM's eta) go to the
    sampler factory; an option the chosen sampler does not take is a ValueError naming it."""
    base = scheduler if scheduler is not None else default
    if isinstance(sampler, Sampler):
        options = {k: v for k, v in options.items() if not (k == "eta" and v == 0.0)}
        if options:
            raise ValueError(f"sampler options {sorted(options)} cannot be applied to a ready-made Sampler")
        return sampler
    if sampler is None:
        if base is None:
            raise ValueError("the pipeline has no scheduler config: pass sampler= (a name, a config dict or a "
                             "Sampler)")
        config = base
    elif isinstance(sampler, dict):
        config = sampler
    elif isinstance(sampler, str):
        names = sampler_names()
        if _key(sampler) not in names:
            raise ValueError(f"unknown sampler {sampler!r}; known: {', '.join(sorted(set(names)))}")
        config = dict(base or {}, _class_name=names[_key(sampler)])
    else:
        raise TypeError(f"sampler must be None, a name, a scheduler config dict or a Sampler, got "
                        f"{type(sampler).__name__}")
    options = {k: v for k, v in options.items() if not (k == "eta" and v == 0.0 and
                                                         config.get("_class_name") != "DDIMScheduler")}
    return from_config(config, **options)
