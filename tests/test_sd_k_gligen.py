"""GLIGEN and the x2 latent upscaler against diffusers 0.35.2 (tools/fixtures/sd_k_gligen.py).

PyNative fp32 images within 1e-4 of diffusers per pipeline, the GLIGEN UNet (fusers + position_net) and the K-block
UNet within rel L2 1e-5, one graph case; the released structures map one to one; bad input is a one-line ValueError.
Graph mode and fp16 of every case are measured by tools/support/sd_k_gligen.py.
"""
import functools
import gzip
import json
from pathlib import Path

import mindspore as ms
import numpy as np
import PIL.Image
import pytest
from mindspore import Tensor
from mindspore.nn.utils import no_init_parameters

import msdiff
from msdiff.nets import unet_2d_condition as u
from msdiff.nets import unet_k
from msdiff.recipes import family_of
from msdiff.recipes.gligen import gligen
from msdiff.recipes.latent_upscale import latent_upscale
from tools.support._packed import pipeline_folder

FIXTURES = Path(__file__).parent / "fixtures" / "sd_k_gligen"
CASES = json.loads((FIXTURES / "cases.json").read_text())


@functools.lru_cache(maxsize=None)
def _components(folder: str):
    return msdiff.load_pipeline(pipeline_folder(FIXTURES, folder))  # the UNet's weights from <folder>_unet.npz


def _case(name: str):
    meta, d = CASES[name], dict(np.load(FIXTURES / f"{name}.npz"))
    kwargs = dict(meta["args"], noise=[d[f"noise_{i}"] for i in range(meta["num_noise"])])
    if "latents" in d:
        kwargs["latents"] = d["latents"]
    if "image" in d:
        kwargs["image"] = PIL.Image.fromarray(d["image"]) if d["image"].dtype == np.uint8 else d["image"]
    if meta.get("scheduler"):
        kwargs["sampler"] = meta["scheduler"]
    return _components(meta["folder"]), kwargs, d["expected"]


def _close(got, want, tol=1e-4):
    got = np.asarray(got.asnumpy() if hasattr(got, "asnumpy") else got)
    assert got.shape == want.shape and np.abs(got - want).max() <= tol, np.abs(got - want).max()


def _rel(got, want) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


@pytest.mark.parametrize("case,mode", [("gligen", "pynative"), ("gligen_no_cfg", "pynative"),
                                       ("gligen", "graph")])
def test_gligen(case, mode):
    c, kwargs, want = _case(case)
    _close(gligen(c, output_type="np", mode=mode, **kwargs), want)


def test_gligen_unet_parity_and_gate():
    """The grounded UNet call equals diffusers'; the fuser scale 0 gives the UNet without grounding exactly."""
    unet, d = _components("gligen").unet, np.load(FIXTURES / "unet_gligen.npz")
    args = (Tensor(d["sample"]), Tensor(d["timestep"]), Tensor(d["context"]))
    inputs = (Tensor(d["boxes"]), Tensor(d["masks"]), Tensor(d["positive_embeddings"]))
    got = unet(*args, gligen=inputs + (Tensor(1.0, ms.float32),)).asnumpy()
    assert _rel(got, d["expected"]) <= 1e-5
    names = [p.name for p in unet.get_parameters()]
    assert names == [k for k, _ in unet.parameters_and_names()]  # unique, path-named (graph mode needs it)
    off = unet(*args, gligen=inputs + (Tensor(0.0, ms.float32),)).asnumpy()
    plain = unet(*args).asnumpy()
    assert np.array_equal(off, plain) and _rel(plain, d["expected"]) > 1e-2


def _structure(name: str):
    """(msdiff's {parameter: shape}, the checkpoint's) of a released UNet (config from public knowledge, built by
    diffusers on the meta device), msdiff's built through the registry as the loader does."""
    with gzip.open(FIXTURES / "structure.json.gz") as f:
        s = json.loads(f.read())[name]
    with no_init_parameters():
        cell = unet_k.UNet2DConditionModel(unet_k.config_from_diffusers(s["config"]))
    ours = {k: list(p.shape) for k, p in cell.parameters_and_names()}
    theirs = {unet_k.map_weights(k): v for k, v in s["shapes"].items()}
    assert len(theirs) == len(s["shapes"])
    return ours, theirs


def test_gligen_released_structure():
    """gligen/gligen-generation-text-box's UNet maps parameter for parameter, with the same shapes."""
    ours, theirs = _structure("gligen/gligen-generation-text-box/unet")
    assert ours == theirs
    blocks = {k.split(".attn1.")[0] for k in ours if ".attn1." in k}
    assert {k.split(".fuser.")[0] for k in ours if ".fuser." in k} == blocks  # every transformer block is gated
    assert any(k.startswith("position_net.") for k in ours)


@pytest.mark.parametrize("change,match", [
    (dict(gligen_boxes=[[0.1, 0.2, 1.3, 0.8], [0.5, 0.4, 0.9, 0.9]]), r"gligen_boxes\[0\].*outside \[0, 1\]"),
    (dict(gligen_boxes=[[0.1, 0.2, 0.5, 0.8]]), "gligen_phrases has 2 entries but gligen_boxes has 1"),
    (dict(gligen_phrases="a cat"), "list of strings"),
    (dict(gligen_boxes=[[0.1, 0.2, 0.5], [0.5, 0.4, 0.9, 0.9]]), r"gligen_boxes\[0\] must be 4 finite numbers"),
    (dict(gligen_scheduled_sampling_beta=1.5), "gligen_scheduled_sampling_beta must be in"),
])
def test_gligen_bad_input(change, match):
    c, kwargs, _ = _case("gligen")
    with pytest.raises(ValueError, match=match):
        gligen(c, **dict(kwargs, **change))


def test_gligen_family():
    assert family_of("StableDiffusionGLIGENPipeline").recipe is gligen
    plain = msdiff.load_pipeline(FIXTURES.parent / "pipelines" / "sd")
    with pytest.raises(ValueError, match="needs a GLIGEN UNet with attention_type 'gated'"):
        gligen(plain, prompt="x", gligen_phrases=["a"], gligen_boxes=[[0, 0, 1, 1]])


@pytest.mark.parametrize("case", ["latent_upscale", "latent_upscale_latents_karras"])
def test_latent_upscale(case):
    c, kwargs, want = _case(case)
    _close(latent_upscale(c, output_type="np", **kwargs), want)


def test_k_unet_parity():
    unet, d = _components("latent_upscale").unet, np.load(FIXTURES / "unet_k.npz")
    assert isinstance(unet, unet_k.KUNet2DConditionModel)
    got = unet(Tensor(d["sample"]), Tensor(d["timestep"]), Tensor(d["context"]), Tensor(d["timestep_cond"]))
    assert _rel(got.asnumpy(), d["expected"]) <= 1e-5


def test_latent_upscaler_released_structure():
    """stabilityai/sd-x2-latent-upscaler's UNet maps parameter for parameter, with the same shapes."""
    ours, theirs = _structure("stabilityai/sd-x2-latent-upscaler/unet")
    assert ours == theirs and any(".norm_cross." in k for k in ours) and "time_proj.weight" in ours


@pytest.mark.parametrize("change,match", [
    (dict(image=None), "image is required"),
    (dict(prompt=["a cat", "a dog"]), "prompt has batch size 2 and image has batch size 1"),
    (dict(guidance_scale=float("nan")), "guidance_scale must be a finite number"),
])
def test_latent_upscale_bad_input(change, match):
    c, kwargs, _ = _case("latent_upscale")
    with pytest.raises(ValueError, match=match):
        latent_upscale(c, **dict(kwargs, **change))


def test_k_unet_config_errors():
    d = {"down_block_types": ["KDownBlock2D", "CrossAttnDownBlock2D"], "up_block_types": ["KUpBlock2D", "UpBlock2D"]}
    with pytest.raises(ValueError, match="cannot be mixed with K blocks"):
        unet_k.config_from_diffusers(d)
    with pytest.raises(ValueError, match="multiples of 32"):
        unet_k.config_from_diffusers({"block_out_channels": [16, 32, 64, 64], "down_block_types":
                                      list(unet_k.KUNet2DConditionConfig.down_block_types)})
    assert family_of("StableDiffusionLatentUpscalePipeline").recipe is latent_upscale


def test_msdiff_generate_dispatches(tmp_path):
    """`msdiff generate` runs each pipeline class's recipe (GLIGEN's phrases and boxes from --gligen-phrases /
    --gligen-boxes): the PNG equals the recipe called directly."""
    from msdiff.cli import main

    low = tmp_path / "low.png"
    PIL.Image.fromarray(dict(np.load(FIXTURES / "latent_upscale.npz"))["image"]).save(low)
    common = dict(num_inference_steps=2, seed=3, mode="pynative")
    boxes = [[0.1, 0.1, 0.5, 0.9], [0.5, 0.5, 1.0, 1.0]]
    runs = [("latent_upscale", ["--image", str(low)], lambda c: latent_upscale(c, "a dog", str(low), **common)),
            ("gligen", ["--gligen-phrases", "a dog", "a ball", "--gligen-boxes", "0.1,0.1,0.5,0.9; 0.5,0.5,1,1"],
             lambda c: gligen(c, "a dog", gligen_phrases=["a dog", "a ball"], gligen_boxes=boxes, **common))]
    for folder, extra, direct in runs:
        out = tmp_path / f"{folder}.png"
        assert main(["generate", "--model", str(pipeline_folder(FIXTURES, folder)), "--prompt", "a dog", "--steps", "2",
                     "--seed", "3", "--mode", "pynative", "--out", str(out)] + extra) == 0
        want = np.asarray(direct(_components(folder))[0])
        np.testing.assert_array_equal(np.asarray(PIL.Image.open(out).convert("RGB")), want)


def test_cli_boxes_parse():
    from msdiff.recipes.gligen import parse_boxes
    assert parse_boxes("0,0.5,1,1;0.25,0,0.75,0.5") == [[0.0, 0.5, 1.0, 1.0], [0.25, 0.0, 0.75, 0.5]]
    with pytest.raises(ValueError, match="--gligen-boxes: box 2 .*4 numbers"):
        parse_boxes("0,0,1,1;0.1,0.2")
    with pytest.raises(ValueError, match="--gligen-boxes: box 1 .*not a number"):
        parse_boxes("a,0,1,1")
