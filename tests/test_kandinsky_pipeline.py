"""The kandinsky_v22 recipe against diffusers 0.35.2's KandinskyV22Pipeline (tiny UNet + MoVQ, DDPM): images max
abs <= 1e-4 in fp32, PyNative and graph mode, from the same embeddings, latents and recorded step noise."""
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import msdiff
from msdiff.recipes.kandinsky import kandinsky_v22, movq_latent_size

FIX = Path(__file__).parent / "fixtures" / "kandinsky"
CASES = {"cfg": dict(guidance_scale=4.0, num_inference_steps=3, num_images_per_prompt=2),
         "no_cfg": dict(guidance_scale=1.0, num_inference_steps=4, num_images_per_prompt=1)}


@lru_cache(maxsize=None)
def _pipeline():
    return msdiff.load_pipeline(FIX / "k22")


def _case(name: str) -> dict:
    with np.load(FIX / f"k22_{name}.npz") as f:
        return dict(f)


@pytest.mark.parametrize("name,mode", [("cfg", "pynative"), ("cfg", "graph"), ("no_cfg", "pynative")])
def test_pipeline_parity(name, mode):
    d = _case(name)
    got = kandinsky_v22(_pipeline(), d["image_embeds"], d["negative_image_embeds"], height=8, width=8,
                        latents=d["latents"], noise=list(d["noise"]), mode=mode, output_type="np", **CASES[name])
    assert got.shape == d["expected"].shape
    err = float(np.abs(got.astype(np.float64) - d["expected"]).max())
    assert err <= 1e-4, f"{name} {mode}: max abs {err:.3g}"


def test_latent_size_and_errors():
    assert movq_latent_size(512, 768, 8) == (64, 96) and movq_latent_size(500, 8, 8) == (64, 8)
    d = _case("cfg")
    with pytest.raises(ValueError, match="negative_image_embeds"):
        kandinsky_v22(_pipeline(), d["image_embeds"], None, height=8, width=8, num_inference_steps=2)
    with pytest.raises(ValueError, match=r"\[batch, dim\]"):
        kandinsky_v22(_pipeline(), d["image_embeds"][0], d["negative_image_embeds"], num_inference_steps=2)
