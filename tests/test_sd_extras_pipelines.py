"""SD-family extra pipelines as recipes against diffusers 0.35.2 (fixtures from tools/fixtures/sd_extras.py)."""
import functools
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

import msdiff
from msdiff.recipes.image_variation import image_variation

FIXTURES = Path(__file__).parent / "fixtures" / "sd_extras"
CASES = json.loads((FIXTURES / "pipelines.json").read_text())


@functools.lru_cache(maxsize=None)
def _components(folder: str, dtype: str):
    return msdiff.load_pipeline(FIXTURES / folder, dtype=dtype)


def _variation(case: str, mode: str, dtype: str = "float32"):
    meta, d = CASES[case], dict(np.load(FIXTURES / f"{case}.npz"))
    args = {k: v for k, v in meta["args"].items() if k not in ("output_type", "latents")}
    out = image_variation(_components(meta["folder"], dtype), PIL.Image.fromarray(d["image"]), latents=d["latents"],
                          output_type="np", mode=mode, **args)
    return out, d["expected"]


# Graph mode and fp16 of every case are measured by tools/support/sd_extras.py (docs/SUPPORT.md); here: one graph
# case per recipe family is kept for depth2img only, to stay within the test-time budget.
@pytest.mark.parametrize("case", ["image_variation", "image_variation_no_cfg"])
def test_image_variation(case):
    got, want = _variation(case, "pynative")
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4


def test_image_variation_needs_an_image():
    with pytest.raises(ValueError, match="image is required"):
        image_variation(_components("image_variation", "float32"), None)


@functools.lru_cache(maxsize=None)
def _depth_components(dtype: str):
    # DPTImageProcessor is not a preprocessor io.load_pipeline reads yet: the recipe reads its config itself
    return msdiff.load_pipeline(FIXTURES / "depth2img", dtype=dtype, skip=("safety_checker", "feature_extractor"))


def _depth(case: str, mode: str, dtype: str = "float32"):
    from msdiff.recipes.depth2img import depth_to_image
    meta, d = CASES[case], dict(np.load(FIXTURES / f"{case}.npz"))
    args = {k: v for k, v in meta["args"].items() if k not in ("output_type", "depth_map")}
    out = depth_to_image(_depth_components(dtype), image=PIL.Image.fromarray(d["image"]), depth_map=d.get("depth_map"),
                         output_type="np", noise=[d[f"noise_{i}"] for i in range(meta["num_noise"])], mode=mode,
                         **args)
    return out, d["expected"]


@pytest.mark.parametrize("case,mode", [("depth2img", "pynative"), ("depth2img_depth_map", "pynative"),
                                       ("depth2img", "graph")])
def test_depth_to_image(case, mode):
    got, want = _depth(case, mode)
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4


def test_depth_to_image_errors():
    from msdiff.recipes.depth2img import depth_to_image
    image = PIL.Image.fromarray(dict(np.load(FIXTURES / "depth2img.npz"))["image"])
    with pytest.raises(ValueError, match="needs image"):
        depth_to_image(_depth_components("float32"), "a cat")
    with pytest.raises(ValueError, match=r"\[batch, height, width\]"):
        depth_to_image(_depth_components("float32"), "a cat", image, depth_map=np.ones((1, 1, 8, 8), np.float32))
