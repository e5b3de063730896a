"""Recipes vs diffusers 0.35.2 pipelines on tiny components (tests/fixtures/pipelines, tools/fixtures/pipelines.py).

Each case replays the pipeline call's arguments, explicit latents and recorded extra noise, and
compares the "np" images: max abs error <= 1e-4 in fp32, in PyNative and in graph mode.
"""
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from mindspore import Tensor

import msdiff
from msdiff import recipes

FIX = Path(__file__).parent / "fixtures" / "pipelines"
CASES = json.loads((FIX / "cases.json").read_text())
TOL = 1e-4

RECIPE = {
    "StableDiffusionPipeline": recipes.text_to_image,
    "StableDiffusionXLPipeline": recipes.text_to_image,
    "StableDiffusionImg2ImgPipeline": recipes.image_to_image,
    "StableDiffusionXLImg2ImgPipeline": recipes.image_to_image,
    "StableDiffusionInpaintPipeline": recipes.inpaint,
    "StableDiffusionXLInpaintPipeline": recipes.inpaint,
    "StableDiffusionInstructPix2PixPipeline": recipes.instruct_pix2pix,
    "LatentConsistencyModelPipeline": recipes.lcm_text_to_image,
    "LatentConsistencyModelImg2ImgPipeline": recipes.lcm_image_to_image,
}

_COMPONENTS = {}


def components(folder: str):
    """load_pipeline of a fixture folder, once per test session."""
    if folder not in _COMPONENTS:
        _COMPONENTS[folder] = msdiff.load_pipeline(FIX / folder)
    return _COMPONENTS[folder]


def case_call(name: str):
    """(recipe, components, kwargs, expected) replaying fixture case `name`."""
    meta = CASES[name]
    z = np.load(FIX / f"{name}.npz")
    kwargs = {k: tuple(v) if isinstance(v, list) and k != "prompt" and k != "negative_prompt" else v
              for k, v in meta["args"].items()}
    if "latents" in z.files:
        kwargs["latents"] = z["latents"]
    if "image" in z.files:
        img = z["image"]
        kwargs["image"] = PIL.Image.fromarray(img) if img.dtype == np.uint8 else Tensor(img)
    if "mask_image" in z.files:
        kwargs["mask_image"] = PIL.Image.fromarray(z["mask_image"])
    kwargs["noise"] = [z[f"noise_{i}"] for i in range(meta["num_noise"])]
    if meta["scheduler"]:
        kwargs["sampler"] = meta["scheduler"]
    return RECIPE[meta["pipeline_class"]], components(meta["folder"]), kwargs, z["expected"]


def _np(out):
    return out.asnumpy() if isinstance(out, Tensor) else np.asarray(out)


@pytest.mark.parametrize("mode", ["pynative", "graph"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_recipe_matches_diffusers(name, mode):
    recipe, comps, kwargs, expected = case_call(name)
    out = _np(recipe(comps, mode=mode, **kwargs))
    assert out.shape == expected.shape
    err = float(np.abs(out - expected).max())
    assert err <= TOL, f"{name} [{mode}]: max abs error {err:.3g} > {TOL}"


def test_refiner_hand_off_chains():
    """SD-XL base with denoising_end then img2img with denoising_start, chained through msdiff latents."""
    _, comps, base_kwargs, _ = case_call("sdxl_text_to_image_end")
    latents = recipes.text_to_image(comps, **base_kwargs)
    _, _, kwargs, expected = case_call("sdxl_image_to_image_start")
    kwargs["image"] = latents
    out = recipes.image_to_image(comps, **kwargs)
    assert float(np.abs(out - expected).max()) <= TOL
