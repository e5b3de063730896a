"""Kandinsky priors and the Kandinsky 2.2 decoder variants against diffusers 0.35.2 (fixture area kandinsky2):
PyNative fp32, from the same inputs and recorded noise; prior embeddings and images max abs <= 1e-4. One graph
case (inpainting: extra channels and the blend inside the compiled step); graph and fp16 of the others are the
support rows'."""
import dataclasses
import importlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from mindspore import Tensor

import msdiff
from msdiff.recipes.kandinsky_prior import (encode_reference_image, kandinsky21_prior_interpolate, kandinsky_prior,
                                            kandinsky_prior_emb2emb, kandinsky_prior_interpolate)

decoders = importlib.import_module("msdiff.recipes.kandinsky_decoders")
FIXTURES = Path(__file__).parent / "fixtures"
FIX = FIXTURES / "kandinsky2"
CASES = json.loads((FIX / "cases.json").read_text())
DECODERS = {"img2img": decoders.kandinsky_v22_img2img, "inpaint": decoders.kandinsky_v22_inpaint,
            "controlnet": decoders.kandinsky_v22_controlnet,
            "controlnet_img2img": decoders.kandinsky_v22_controlnet_img2img}


@lru_cache(maxsize=None)
def _prior():
    return msdiff.load_pipeline(FIX / "prior")


@lru_cache(maxsize=None)
def _decoder(unet: str):
    """kandinsky/k22 (MoVQ, DDPM) with the case's UNet, as the fixture generator assembles the diffusers pipeline."""
    folder, name = unet.rsplit("/", 1)
    return dataclasses.replace(msdiff.load_pipeline(FIXTURES / "kandinsky" / "k22"),
                               unet=msdiff.load(FIXTURES / folder, name))


def _case(name: str) -> dict:
    with np.load(FIX / f"{name}.npz") as f:
        return dict(f)


def _max_abs(got, want) -> float:
    return float(np.abs(np.asarray(got, np.float64) - want).max())


def run_prior_case(name: str, mode: str = "pynative"):
    d, args = _case(name), dict(CASES[name]["args"])
    kw = dict(noise=list(d["noise"]), mode=mode, output_type="np")
    if name == "emb2emb":
        return kandinsky_prior_emb2emb(_prior(), image=PIL.Image.fromarray(d["image"]), **kw, **args), d
    if name.startswith("interpolate"):
        fn = kandinsky_prior_interpolate if name == "interpolate" else kandinsky21_prior_interpolate
        return fn(_prior(), ["a red cat", PIL.Image.fromarray(d["image"])],
                                           latents=d["latents"], **kw, **args), d
    return kandinsky_prior(_prior(), latents=d["latents"], **kw, **args), d


def run_decoder_case(name: str, mode: str = "pynative", dtype: str = "float32"):
    d, meta = _case(name), CASES[name]
    kw = dict(meta["args"], noise=list(d["noise"]), mode=mode, output_type="np", height=8, width=8)
    for key in ("latents", "hint"):
        if key in d:
            kw[key] = d[key]
    for key in ("image", "mask_image"):
        if key in d:
            kw[key] = PIL.Image.fromarray(d[key])
    got = DECODERS[name](_decoder(meta["unet"]), d["image_embeds"], negative_image_embeds=d["negative_image_embeds"],
                         **kw)
    return got, d


@pytest.mark.parametrize("name", ["prior_cfg", "prior_negative", "prior21", "emb2emb", "interpolate", "interpolate21"])
def test_prior_parity(name):
    out, d = run_prior_case(name)
    for key in ("image_embeds", "negative_image_embeds"):
        got = getattr(out, key)
        assert got.shape == d[key].shape, (name, key)
        err = _max_abs(got, d[key])
        assert err <= 1e-4, f"{name} {key}: max abs {err:.3g}"


@pytest.mark.parametrize("name,mode", [("img2img", "pynative"), ("inpaint", "pynative"), ("inpaint", "graph"),
                                       ("controlnet", "pynative"), ("controlnet_img2img", "pynative")])
def test_decoder_parity(name, mode):
    got, d = run_decoder_case(name, mode)
    assert got.shape == d["expected"].shape
    err = _max_abs(got, d["expected"])
    assert err <= 1e-4, f"{name} {mode}: max abs {err:.3g}"


def test_kept_mask_erosion_is_diffusers():
    keep = np.ones((1, 1, 5, 5), np.float32)
    keep[0, 0, 2, 2] = 0
    out = decoders.erode_kept(keep)[0, 0]
    cleared = {(int(i), int(j)) for i, j in zip(*np.nonzero(out == 0))}
    assert cleared == {(2, 2), (1, 2), (2, 1), (1, 1), (3, 2), (2, 3), (3, 3)}  # not (1, 3) nor (3, 1)


def test_errors():
    d = _case("controlnet")
    with pytest.raises(ValueError, match="hint"):
        decoders.kandinsky_v22_controlnet(_decoder(CASES["controlnet"]["unet"]), d["image_embeds"],
                                          d["negative_image_embeds"], None, height=8, width=8, num_inference_steps=2)
    with pytest.raises(ValueError, match="num_inference_steps"):
        kandinsky_prior(_prior(), "a cat", num_inference_steps=1)
    with pytest.raises(ValueError, match=r"\[batch, 3, h, w\]"):
        encode_reference_image(_prior(), Tensor(np.zeros((3, 32, 32), np.float32)))
    with pytest.raises(ValueError, match="weights"):
        kandinsky_prior_interpolate(_prior(), ["a cat"], [0.5, 0.5])
    with pytest.raises(TypeError, match="seed="):
        kandinsky_prior(_prior(), "a cat", generator=0)


def test_cli_runs_prior_then_decoder(tmp_path):
    """msdiff generate --prior: the PNG equals the prior and decoder recipes called in a row on one noise source."""
    from msdiff.cli import main
    from msdiff.recipes.kandinsky import kandinsky_v22
    from msdiff.samplers import noise_source

    out = tmp_path / "k.png"
    assert main(["generate", "--model", str(FIXTURES / "kandinsky" / "k22"), "--prior", str(FIX / "prior"),
                 "--prompt", "a red cat", "--size", "8x8", "--steps", "2", "--prior-steps", "2", "--seed", "3",
                 "--mode", "pynative", "--out", str(out)]) == 0
    noise = noise_source(3)
    emb = kandinsky_prior(_prior(), "a red cat", num_inference_steps=2, noise=noise, mode="pynative")
    want = kandinsky_v22(msdiff.load_pipeline(FIXTURES / "kandinsky" / "k22"), *emb, height=8, width=8,
                         num_inference_steps=2, noise=noise, mode="pynative")[0]
    assert np.array_equal(np.asarray(PIL.Image.open(out).convert("RGB")), np.asarray(want))
