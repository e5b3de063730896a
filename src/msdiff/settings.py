"""Process-wide defaults a user sets once: the execution mode and the progress bar.

- Mode: every recipe and `msdiff.samplers.sample` take `mode=None`, which means `default_mode()`: "graph" (the
  whole denoising step compiled with `mindspore.jit`) unless `set_default_mode("pynative")` or the environment
  variable MSDIFF_MODE says otherwise. Graph is the default because it is faster for a real call: the SD-1.5 UNet
  step at 64x64 latents, batch 2, fp32 takes 9.5 s in graph mode (13.5 s compile, once) against 15.6 s in PyNative
  on a quiet 2-core CPU (benchmarks/README.md), so graph wins from the third step on. PyNative starts faster and
  peaks lower in memory (5.1 GB vs 9.4 GB for that step): tiny models, a few steps, or debugging a net.
- Progress: `sample` shows a tqdm bar over the denoising steps when stderr is a terminal or in a notebook, as
  diffusers does. `set_progress_bar_config(disable=True)` (diffusers' spelling) or MSDIFF_PROGRESS=0 turns it off;
  other keywords (desc, leave, ...) go to tqdm.
"""
import os
import sys
from contextlib import contextmanager
from typing import Optional

MODES = ("pynative", "graph")
_STATE = {"mode": None, "progress": {}}


def set_default_mode(mode: Optional[str]) -> None:
    """The mode `mode=None` means from now on ("pynative" / "graph"; None: back to the built-in default)."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be 'pynative' or 'graph', got {mode!r}")
    _STATE["mode"] = mode


def default_mode() -> str:
    """The mode used where a recipe or `sample` gets mode=None."""
    if _STATE["mode"] is not None:
        return _STATE["mode"]
    env = os.environ.get("MSDIFF_MODE")
    if env:
        if env not in MODES:
            raise ValueError(f"MSDIFF_MODE must be 'pynative' or 'graph', got {env!r}")
        return env
    return "graph"


def resolve_mode(mode: Optional[str]) -> str:
    """`mode`, or the default for None; ValueError for anything else."""
    mode = default_mode() if mode is None else mode
    if mode not in MODES:
        raise ValueError(f"mode must be 'pynative' or 'graph', got {mode!r}")
    return mode


def set_progress_bar_config(**kwargs) -> None:
    """diffusers' set_progress_bar_config: disable=True hides the bar; other keywords are passed to tqdm."""
    _STATE["progress"] = dict(kwargs)


@contextmanager
def progress_bar_config(**kwargs):
    """set_progress_bar_config for the duration of a `with` block (the CLI draws its own bar)."""
    saved = _STATE["progress"]
    _STATE["progress"] = dict(kwargs)
    try:
        yield
    finally:
        _STATE["progress"] = saved


def _interactive() -> bool:
    if "ipykernel" in sys.modules:
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(total: int, desc: str = "denoising", enabled: Optional[bool] = None):
    """A tqdm bar over `total` steps, or None when the bar is off (disabled, MSDIFF_PROGRESS=0, not interactive).

    enabled: a caller's explicit choice (a recipe's progress=True / False) over the configured one."""
    config = dict(_STATE["progress"])
    disable = config.pop("disable", None)
    if enabled is not None:
        disable = not enabled
    if disable is None:
        env = os.environ.get("MSDIFF_PROGRESS")
        disable = env == "0" if env is not None else not _interactive()
    if disable:
        return None
    from tqdm.auto import tqdm
    config.setdefault("desc", desc)
    config.setdefault("unit", "step")
    return tqdm(total=total, **config)
