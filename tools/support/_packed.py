"""Fixture pipeline folders whose UNet weights are kept in `<name>_unet.npz` instead of <name>/unet/'s safetensors,
to keep the fixture areas small: compressed fp16 arrays, and int8 codes (value = code * __code_step__) for weights
that the fixture generator put on that grid (tools/fixtures/sd_k_gligen.py `pack_unet`). `pipeline_folder` writes
the diffusers folder that msdiff (and diffusers) load; numpy and safetensors only, so the tests and the reference
env both use it.
"""
import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

STEP_KEY = "__code_step__"


def unet_weights(npz: Path) -> dict:
    """The UNet's fp16 state dict from a packed npz (int8 arrays are codes of value / __code_step__)."""
    with np.load(npz) as f:
        step = np.float32(f[STEP_KEY]) if STEP_KEY in f.files else None
        return {k: (f[k].astype(np.float32) * step).astype(np.float16) if f[k].dtype == np.int8 else f[k]
                for k in f.files if k != STEP_KEY}


@functools.lru_cache(maxsize=None)
def pipeline_folder(fix: Path, name: str) -> Path:
    """fix/<name>/ with unet/diffusion_pytorch_model.safetensors written from fix/<name>_unet.npz, in a temporary
    folder removed at exit."""
    from safetensors.numpy import save_file

    root = Path(tempfile.mkdtemp(prefix=f"msdiff-fixture-{name}-"))
    atexit.register(shutil.rmtree, root, True)
    folder = root / name
    shutil.copytree(Path(fix) / name, folder)
    save_file(unet_weights(Path(fix) / f"{name}_unet.npz"),
              str(folder / "unet" / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    return folder
