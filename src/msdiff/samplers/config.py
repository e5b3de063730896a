"""from_config: a diffusers scheduler_config.json dict -> the matching msdiff Sampler."""
import inspect
import math
from numbers import Integral, Real
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


def _int(low: int):
    return lambda v: isinstance(v, Integral) and not isinstance(v, bool) and v >= low, f"an integer >= {low}"


def _real(low=-math.inf, high=math.inf, *, low_open=False, finite=True):
    def ok(v):
        if isinstance(v, bool) or not isinstance(v, Real) or math.isnan(v) or (finite and not math.isfinite(v)):
            return False
        return (v > low if low_open else v >= low) and v <= high
    if high < math.inf:
        bounds = f" in {'(' if low_open else '['}{low}, {high}]"
    else:
        bounds = f" {'>' if low_open else '>='} {low}" if low > -math.inf else ""
    return ok, f"a {'finite ' if finite else ''}number{bounds}"


def _list_of(rule, none=True):
    check, what = rule
    return (lambda v: (none and v is None) or (isinstance(v, (list, tuple)) and all(check(x) for x in v)),
            f"a list, each {what}" + (", or null" if none else ""))


def _or_none(rule):
    check, what = rule
    return lambda v: v is None or check(v), f"{what} or null"


# key -> (check, what is allowed); keys not listed are checked against the type of the factory's default
_RULES = {
    "num_train_timesteps": _int(1), "steps_offset": _int(0), "solver_order": _int(1), "order": _int(1),
    "original_inference_steps": _int(1), "base_image_seq_len": _int(1), "max_image_seq_len": _int(1),
    "beta_start": _real(0, 1, low_open=True), "beta_end": _real(0, 1, low_open=True),
    "trained_betas": _list_of(_real(0, 1, low_open=True)), "timesteps": _list_of(_int(0)),
    "disable_corrector": _list_of(_int(0), none=False),
    "dynamic_thresholding_ratio": _real(0, 1, low_open=True), "clip_sample_range": _real(0, low_open=True),
    "sample_max_value": _real(0, low_open=True), "rho": _real(0, low_open=True),
    "sigma_data": _real(0, low_open=True), "timestep_scaling": _real(0, low_open=True),
    "shift": _real(0, low_open=True), "flow_shift": _real(0, low_open=True), "eta": _real(0), "s_noise": _real(0),
    "sigma_min": _or_none(_real(0, low_open=True)), "sigma_max": _or_none(_real(0, low_open=True)),
    "mu": _or_none(_real()), "shift_terminal": _or_none(_real(0, 1, low_open=True)),
    "lambda_min_clipped": _real(finite=False), "variance_type": _or_none((lambda v: isinstance(v, str), "a string")),
}
_BY_DEFAULT = {bool: (lambda v: isinstance(v, bool), "true / false"), int: _int(-2**63),
               float: _real(), str: (lambda v: isinstance(v, str), "a string")}


def check_config(config: dict, **sampler_args) -> None:
    """ValueError naming the first value (of a config key or a sampler argument) that the sampler factory of
    config's _class_name takes, with the wrong type or range; configs of other classes are not checked here."""
    name = config.get("_class_name")
    if name not in SAMPLERS:
        return
    params = inspect.signature(SAMPLERS[name]).parameters
    values = {key: val for key, val in config.items() if key in params and key not in _IGNORED}
    values.update(sampler_args)
    for key, value in values.items():
        default = params[key].default if key in params else None
        check, what = _RULES.get(key) or _BY_DEFAULT.get(type(default), (lambda v: True, ""))
        if not check(value):
            source = "sampler argument" if key in sampler_args else "config"
            raise ValueError(f"{name}: {source} {key}={value!r} is not allowed; {key} must be {what}")


def from_config(config: dict, **sampler_args) -> Sampler:
    """The Sampler for a diffusers scheduler config dict; sampler_args are per-call options (e.g. eta for DDIM).

    Keys the factory does not know are ignored like diffusers ignores them; a known key with a value of the
    wrong type or range (`check_config`) or one msdiff does not implement, or an unknown _class_name, raises
    ValueError naming it. Equal configs
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
    check_config(config, **sampler_args)
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
