"""from_config: a diffusers scheduler_config.json dict -> the matching msdiff Sampler."""
import inspect
from typing import Callable, Dict

from .core import Sampler
from . import ddim_inverse, dpm, edm, k, unclip, vp

# diffusers _class_name -> factory taking that scheduler's config fields as keyword arguments
SAMPLERS: Dict[str, Callable[..., Sampler]] = {
    "DDIMScheduler": vp.ddim,
    "DDIMInverseScheduler": ddim_inverse.ddim_inverse,
    "DDPMScheduler": vp.ddpm,
    "PNDMScheduler": vp.pndm,
    "LCMScheduler": vp.lcm,
    "EulerDiscreteScheduler": k.euler,
    "EulerAncestralDiscreteScheduler": k.euler_ancestral,
    "HeunDiscreteScheduler": k.heun,
    "DPMSolverMultistepScheduler": dpm.dpm_solver_multistep,
    "UniPCMultistepScheduler": dpm.unipc_multistep,
    "LMSDiscreteScheduler": k.lms,
    "KDPM2DiscreteScheduler": k.kdpm2,
    "KDPM2AncestralDiscreteScheduler": k.kdpm2_ancestral,
    "EDMEulerScheduler": edm.edm_euler,
    "CMStochasticIterativeScheduler": edm.consistency,
    "FlowMatchEulerDiscreteScheduler": edm.flow_match_euler,
    "UnCLIPScheduler": unclip.unclip,
}

# config keys that never change the numbers msdiff produces
_IGNORED = {"_class_name", "_diffusers_version", "_use_default_values", "_name_or_path"}


def from_config(config: dict, **sampler_args) -> Sampler:
    """The Sampler for a diffusers scheduler config dict; sampler_args are per-call options (e.g. eta for DDIM).

    Keys the factory does not know are ignored like diffusers ignores them; a known key with a value
    msdiff does not implement, or an unknown _class_name, raises ValueError naming it. Equal configs
    return the same Sampler, so its jit-compiled step is reused across calls.
    """
    name = config.get("_class_name")
    if name not in SAMPLERS:
        raise ValueError(f"unsupported scheduler _class_name {name!r}; supported: {sorted(SAMPLERS)}")
    factory = SAMPLERS[name]
    accepted = set(inspect.signature(factory).parameters)
    kwargs = {key: val for key, val in config.items() if key in accepted and key not in _IGNORED}
    bad = set(sampler_args) - accepted
    if bad:
        raise ValueError(f"{name}: unknown sampler arguments {sorted(bad)}")
    kwargs.update(sampler_args)
    key = (name, repr(sorted((k, _hashable(v)) for k, v in kwargs.items())))
    sampler = _CACHE.get(key)
    if sampler is None:
        sampler = _CACHE[key] = factory(**kwargs)
    return sampler


# one Sampler (hence one jit-compiled step) per distinct configuration
_CACHE: Dict[tuple, Sampler] = {}


def _hashable(v):
    return tuple(_hashable(x) for x in v) if isinstance(v, (list, tuple)) else v
