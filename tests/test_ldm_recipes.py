"""ldm_text_to_image / ldm_super_resolution parity with diffusers 0.35.2's LDMTextToImagePipeline and
LDMSuperResolutionPipeline on tiny components (DDIM, 3 steps, explicit latents; eta 0.5 with recorded noise): images max abs <= 1e-4,
PyNative and graph mode; the text-prompt case goes through msdiff's BertTokenizer. The fixture's codebooks are drawn so that every nearest code wins by > 1e-2.
"""
import dataclasses
import json
from functools import lru_cache
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

import msdiff
from msdiff.recipes.ldm import ldm_super_resolution, ldm_text_to_image
from _cases import mode_cases

FIX = Path(__file__).parent / "fixtures" / "ldm"


@lru_cache(maxsize=None)
def _components(name: str):
    return msdiff.load_pipeline(FIX / name)


@lru_cache(maxsize=None)
def _data():
    with np.load(FIX / "pipelines.npz") as f:
        return dict(f), json.loads((FIX / "cases.json").read_text())


def _assert_close(got: np.ndarray, ref: np.ndarray, what: str):
    assert got.shape == ref.shape, f"{what}: shape {got.shape} vs {ref.shape}"
    err = float(np.abs(got.astype(np.float64) - ref).max())
    assert err <= 1e-4, f"{what}: max abs {err:.3g}"


@pytest.mark.parametrize("case,mode", mode_cases(["t2i", "t2i_noguide"]))
def test_ldm_text_to_image(case, mode):
    d, cases = _data()
    images = ldm_text_to_image(_components("ldm_text2im"), d["input_ids"], latents=d[f"{case}_latents"],
                               negative_prompt_ids=d["empty_ids"], output_type="np", mode=mode, **cases[case])
    _assert_close(images, d[f"{case}_images"], f"{case} {mode}")


@pytest.mark.parametrize("case,mode", [("sr", "pynative"), ("sr_eta", "pynative")])
def test_ldm_super_resolution(case, mode):
    d, cases = _data()
    noise = list(d["sr_eta_noise"]) if case == "sr_eta" else None
    images = ldm_super_resolution(_components("ldm_super_resolution"), ms.Tensor(d["sr_image"]),
                                  latents=d["sr_latents"], noise=noise, output_type="np", mode=mode, **cases[case])
    _assert_close(images, d[f"{case}_images"], f"{case} {mode}")


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_ldm_text_to_image_from_text(mode):
    d, cases = _data()
    case = dict(cases["t2i_text"])
    prompt = case.pop("prompt")
    images = ldm_text_to_image(_components("ldm_text2im"), prompt, latents=d["t2i_text_latents"], output_type="np",
                               mode=mode, **case)
    _assert_close(images, d["t2i_text_images"], f"t2i_text {mode}")


def test_pipeline_tokenizer_gives_the_fixture_ids():
    tok = _components("ldm_text2im").tokenizer
    assert type(tok).__name__ == "BertTokenizer"
    d, _ = _data()
    np.testing.assert_array_equal(tok(["a red cat", "a dog on a mat"]).input_ids, d["input_ids"])
    np.testing.assert_array_equal(tok([""] * 2).input_ids, d["empty_ids"])


def test_text_prompt_needs_tokenizer():
    components = dataclasses.replace(_components("ldm_text2im"), tokenizer=None)
    with pytest.raises(ValueError, match="no tokenizer"):
        ldm_text_to_image(components, "a red cat", num_inference_steps=1, height=16, width=16)
