"""Shared pieces of the video-net tests, from tools/support/video.py (one copy for the tests and the support
matrix): tiny nets rebuilt from the seeded weights of tools/fixtures/video.py and loaded with msdiff.load,
diffusers' recorded block inputs / outputs, and the block call signatures."""
import sys
from pathlib import Path

import mindspore as ms

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "video"
sys.path.insert(0, str(ROOT / "tools"))
from support import video as _support  # noqa: E402

BLOCKS = _support.BLOCKS
block = _support.sub_cell


def folder(name: str) -> Path:
    """A checkpoint folder (config.json + seeded safetensors) for fixture net `name`."""
    return _support.checkpoint(FIX, name)


def net(name: str, dtype: str = "float32"):
    """The msdiff net of fixture `name` (cached); "motion" is the from_unet2d assembly."""
    return _support.load(FIX, name, dtype)


def records(name: str) -> dict:
    """The net's inputs, output and block records, aliases resolved."""
    return _support.records(FIX, name)


def block_output(name: str, path: str):
    """fp32 output of block `path` of net `name` on diffusers' recorded inputs."""
    _, signature = BLOCKS[name][path]
    args = _support.block_inputs(records(name), path, signature, ms.float32)
    return _support.block_fn(block(net(name), path))(*args)


def call(cell, args: tuple, mode: str):
    """cell(*args) in PyNative, or compiled with mindspore.jit (mode "jit")."""
    if mode != "jit":
        return cell(*args)

    def f(*xs):
        return cell(*xs)

    return ms.jit(f)(*args)
