"""Shared loading for the video-net tests: tiny nets rebuilt from seeded weights, block records, parity.

tools/fixtures/video.py stores each net's config and key list, not its weights: `seeded_weights` (numpy only)
draws the same fp16-rounded weights here as there, they are written to a temporary safetensors file, and
`msdiff.load` reads them strictly like any checkpoint.
"""
import json
import shutil
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import mindspore as ms
import numpy as np
from safetensors.numpy import save_file

import msdiff

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "video"
sys.path.insert(0, str(ROOT / "tools"))
from fixtures.video import seeded_weights  # noqa: E402

_TMP = Path(tempfile.mkdtemp(prefix="msdiff_video_"))


@lru_cache(maxsize=None)
def folder(name: str) -> Path:
    """A checkpoint folder for fixture net `name`: its config.json and its seeded weights as safetensors."""
    keys = json.loads((FIX / name / "keys.json").read_text())
    out = _TMP / name
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIX / name / "config.json", out / "config.json")
    save_file(seeded_weights(keys["shapes"], keys["seed"]), str(out / "diffusion_pytorch_model.safetensors"))
    return out


@lru_cache(maxsize=None)
def net(name: str, dtype: str = "float32"):
    """msdiff.load of fixture net `name` in dtype (cached per module run)."""
    return msdiff.load(folder(name), dtype=dtype)


@lru_cache(maxsize=None)
def records(name: str) -> dict:
    """The net's inputs, output and block records, aliases resolved."""
    with np.load(FIX / f"{name}.npz") as f:
        d = dict(f)
    for key, same in json.loads((FIX / name / "aliases.json").read_text()).items():
        d[key] = d[same]
    return d


def block(net_cell, path: str):
    """The sub-Cell at a dotted diffusers module path (`down_blocks.0.temp_convs.0`)."""
    cell = net_cell
    for part in path.split("."):
        cell = cell[int(part)] if part.isdigit() else getattr(cell, part)
    return cell


def call(cell, args: tuple, mode: str):
    """cell(*args) in PyNative, or compiled with mindspore.jit (mode "jit")."""
    if mode != "jit":
        return cell(*args)

    def f(*xs):
        return cell(*xs)

    return ms.jit(f)(*args)
