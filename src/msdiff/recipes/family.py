"""One declaration per pipeline family: which diffusers pipeline classes a recipe serves, how the command line
maps onto its arguments, its default step count and sampler. The CLI, the loader's class check and the support
matrix read these; a new family declares `FAMILIES = (Family(...),)` in its own recipe module and is found by
`families()` (every module of msdiff.recipes is looked at), so it touches no shared table."""
import functools
import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from typing import Callable, Optional

# diffusers arguments with another name (or another form) in msdiff
RENAMED = {"generator": "seed= (an int) or noise= (a numpy Generator, recorded arrays or a callable(shape))",
           "callback_on_step_end": "callback= (callback(step, latents) -> True stops)",
           "callback_steps": "callback= (called after every step)", "scheduler": "sampler= (a name, a config "
           "dict or a Sampler; see msdiff.samplers.sampler_names())", "return_dict": "nothing (recipes return "
           "images)", "cross_attention_kwargs": "nothing (not supported)"}


def diffusers_names(recipe: Callable) -> Callable:
    """A recipe that answers a diffusers argument msdiff spells differently (RENAMED) with a TypeError naming
    msdiff's equivalent, instead of Python's bare "unexpected keyword argument"."""
    params = inspect.signature(recipe).parameters

    @functools.wraps(recipe)
    def call(*args, **kwargs):
        for key in kwargs:
            if key in RENAMED and key not in params:
                raise TypeError(f"{recipe.__name__}() has no argument {key!r} (diffusers'): use {RENAMED[key]}")
        return recipe(*args, **kwargs)

    return call


@dataclass(frozen=True)
class Family:
    """A recipe and what the command line needs to run it.

    options: CLI option dest -> recipe keyword ("size" -> width / height); only given options are passed.
    required: option dests that must be given. steps: default num_inference_steps of `msdiff generate`.
    sampler: the default sampler name (None: the checkpoint's scheduler). prepare(args, components, kwargs) ->
    kwargs adjusts the call (e.g. picks img2img when --image is given). cli_options: extra argparse options this
    family adds, as (flag, add_argument keywords) pairs. help: one line for `msdiff generate --help`.
    """

    name: str
    recipe: Callable
    pipelines: tuple
    options: dict = field(default_factory=dict)
    required: tuple = ()
    steps: Optional[int] = None
    sampler: Optional[str] = None
    prepare: Optional[Callable] = None
    cli_options: tuple = ()
    help: str = ""
    metadata: tuple = ()


_CACHE = []


def families() -> tuple:
    """Every Family declared by a module of msdiff.recipes, in module order."""
    if not _CACHE:
        from .. import recipes
        for info in sorted(pkgutil.iter_modules(recipes.__path__), key=lambda m: m.name):
            module = importlib.import_module(f"{recipes.__name__}.{info.name}")
            _CACHE.extend(getattr(module, "FAMILIES", ()))
        seen = {}
        for fam in _CACHE:
            for cls in fam.pipelines:
                if cls in seen:
                    raise RuntimeError(f"pipeline class {cls!r} is declared by both {seen[cls]} and {fam.name}")
                seen[cls] = fam.name
    return tuple(_CACHE)


def family_of(pipeline_class: Optional[str]) -> Family:
    """The family serving `pipeline_class` (ValueError naming the supported classes otherwise; never a guess)."""
    for fam in families():
        if pipeline_class in fam.pipelines:
            return fam
    supported = sorted(c for fam in families() for c in fam.pipelines if c)
    raise ValueError(f"pipeline class {pipeline_class!r} is not supported by msdiff; supported: "
                     f"{', '.join(supported)}")
