"""x4 upscaler, SD-XL InstructPix2Pix and DiffEdit recipes against diffusers 0.35.2 (tools/fixtures/sd_more.py).

PyNative fp32 images within 1e-4 of diffusers per pipeline; one graph case (the upscaler, whose UNet reads the
noise level as class labels). Graph mode and fp16 of every case are measured by tools/support/sd_more.py.
"""
import functools
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from mindspore.nn.utils import no_init_parameters

import msdiff
from msdiff.recipes import family_of
from msdiff.recipes.diffedit import diffedit, generate_mask, invert
from msdiff.recipes.instruct_pix2pix import instruct_pix2pix
from msdiff.recipes.upscale import upscale

FIXTURES = Path(__file__).parent / "fixtures" / "sd_more"
CASES = json.loads((FIXTURES / "cases.json").read_text())


@functools.lru_cache(maxsize=None)
def _components(folder: str):
    return msdiff.load_pipeline(FIXTURES / folder)


def _case(name: str):
    meta, d = CASES[name], dict(np.load(FIXTURES / f"{name}.npz"))
    kwargs = dict(meta["args"], noise=[d[f"noise_{i}"] for i in range(meta["num_noise"])])
    if "image" in d:
        kwargs["image"] = PIL.Image.fromarray(d["image"])
    for key in ("latents", "mask_image", "image_latents"):
        if key in d:
            kwargs[key] = d[key]
    return _components(meta["folder"]), kwargs, d["expected"]


def _close(got, want, tol=1e-4):
    got = np.asarray(got.asnumpy() if hasattr(got, "asnumpy") else got)
    assert got.shape == want.shape and np.abs(got - want).max() <= tol, np.abs(got - want).max()


@pytest.mark.parametrize("case,mode", [("upscale", "pynative"), ("upscale_resize_no_cfg", "pynative"),
                                       ("upscale", "graph")])
def test_upscale(case, mode):
    c, kwargs, want = _case(case)
    _close(upscale(c, output_type="np", mode=mode, **kwargs), want)


@pytest.mark.parametrize("level", [-1, 351, 2.5, True])
def test_upscale_noise_level_out_of_range(level):
    c, kwargs, _ = _case("upscale")
    with pytest.raises(ValueError, match=r"noise_level must be an integer in \[0, 350\]"):
        upscale(c, **dict(kwargs, noise_level=level))


@pytest.mark.parametrize("case", ["sdxl_instruct_pix2pix", "sdxl_instruct_pix2pix_rescale"])
def test_sdxl_instruct_pix2pix(case):
    c, kwargs, want = _case(case)
    _close(instruct_pix2pix(c, output_type="np", mode="pynative", **kwargs), want)


def test_sdxl_instruct_pix2pix_dispatch_and_errors():
    assert family_of("StableDiffusionXLInstructPix2PixPipeline").recipe is instruct_pix2pix
    c, kwargs, _ = _case("sdxl_instruct_pix2pix")
    with pytest.raises(TypeError, match="negative_original_size"):
        instruct_pix2pix(c, **dict(kwargs, negative_original_size=(64, 64)))
    with pytest.raises(ValueError, match=r"guidance_rescale must be in \[0, 1\]"):
        instruct_pix2pix(c, **dict(kwargs, guidance_rescale=-0.5))


def test_diffedit_mask_inversion_and_edit():
    """Each stage against diffusers on its own recorded inputs: the mask exactly, the inverted latents and the
    edited image within 1e-4."""
    c, kwargs, want = _case("diffedit_mask")
    np.testing.assert_array_equal(generate_mask(c, mode="pynative", **kwargs), want)
    c, kwargs, want = _case("diffedit_invert")
    _close(invert(c, mode="pynative", **kwargs), want)
    c, kwargs, want = _case("diffedit")
    kwargs.pop("noise")
    _close(diffedit(c, mode="pynative", **kwargs), want)
    assert family_of("StableDiffusionDiffEditPipeline").recipe is diffedit


def test_diffedit_errors():
    c, kwargs, _ = _case("diffedit")
    kwargs.pop("noise")
    with pytest.raises(ValueError, match=r"mask_image must be in \[0, 1\]"):
        diffedit(c, **dict(kwargs, mask_image=kwargs["mask_image"] * 2))
    with pytest.raises(ValueError, match=r"image_latents must be \(batch 1, 6 steps"):
        diffedit(c, **dict(kwargs, num_inference_steps=8))
    c, kwargs, _ = _case("diffedit_invert")
    with pytest.raises(ValueError, match="num_reg_steps must be a non-negative integer"):
        invert(c, **dict(kwargs, num_reg_steps=-1))
    c, kwargs, _ = _case("diffedit_mask")
    with pytest.raises(ValueError, match="num_maps_per_mask must be a positive integer"):
        generate_mask(c, **dict(kwargs, num_maps_per_mask=0))


@pytest.mark.parametrize("name,module", [("x4_upscaler_unet", "unet_2d_condition"),
                                         ("x4_upscaler_vae", "autoencoder_kl"),
                                         ("x4_upscaler_text_encoder", "clip_text")])
def test_x4_upscaler_full_size_structure(name, module):
    """stabilityai/stable-diffusion-x4-upscaler (configs from public knowledge, built on torch's meta device by
    tools/fixtures/sd_more.py): every diffusers / transformers parameter maps one to one onto msdiff's."""
    import importlib

    mod = importlib.import_module(f"msdiff.nets.{module}")
    entry = json.loads((FIXTURES / "structure.json").read_text())[name]
    cls = {"unet_2d_condition": "UNet2DConditionModel", "autoencoder_kl": "AutoencoderKL",
           "clip_text": "CLIPTextModel"}[module]
    with no_init_parameters():  # shapes only: no weight memory is allocated
        net = getattr(mod, cls)(mod.config_from_diffusers(entry["config"]))
    ours = {n: list(p.shape) for n, p in net.parameters_and_names()}
    theirs = {mod.map_weights(k): s for k, s in entry["params"]}
    assert len(theirs) == len(entry["params"]) and ours == theirs


def test_msdiff_generate_dispatches(tmp_path):
    """`msdiff generate` runs each pipeline class's recipe: the PNG equals the recipes called directly (DiffEdit:
    mask, inversion at --strength and edit in a row)."""
    from msdiff.cli import main

    low, photo = tmp_path / "low.png", tmp_path / "photo.png"
    PIL.Image.fromarray(dict(np.load(FIXTURES / "upscale.npz"))["image"]).save(low)
    PIL.Image.fromarray(dict(np.load(FIXTURES / "diffedit_mask.npz"))["image"]).save(photo)
    common = dict(num_inference_steps=2, seed=3, mode="pynative")
    de = _components("diffedit")
    mask = generate_mask(de, str(photo), "a dog", source_prompt="a cat", **common)
    inv = invert(de, "a cat", str(photo), inpaint_strength=0.5, **common)
    runs = [("upscale", ["--image", str(low), "--noise-level", "30"],
             lambda c: upscale(c, "a dog", str(low), noise_level=30, **common)),
            ("sdxl_pix2pix", ["--image", str(photo)], lambda c: instruct_pix2pix(c, "a dog", str(photo), **common)),
            ("diffedit", ["--image", str(photo), "--source-prompt", "a cat", "--strength", "0.5"],
             lambda c: diffedit(c, "a dog", mask_image=mask, image_latents=inv, inpaint_strength=0.5, **common))]
    for folder, extra, direct in runs:
        out = tmp_path / f"{folder}.png"
        assert main(["generate", "--model", str(FIXTURES / folder), "--prompt", "a dog", "--steps", "2", "--seed", "3",
                     "--mode", "pynative", "--out", str(out)] + extra) == 0
        want = np.asarray(direct(_components(folder))[0])
        np.testing.assert_array_equal(np.asarray(PIL.Image.open(out).convert("RGB")), want)
