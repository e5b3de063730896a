"""GLIGEN against diffusers 0.35.2 (tools/fixtures/sd_k_gligen.py).

PyNative fp32 images within 1e-4 of diffusers per pipeline, the GLIGEN UNet (fusers + position_net) within rel L2
1e-5, one graph case; the released structure maps one to one; bad grounding input is a one-line ValueError. Graph
mode and fp16 of every case are measured by tools/support/sd_k_gligen.py.
"""
import functools
import gzip
import json
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor
from mindspore.nn.utils import no_init_parameters

import msdiff
from msdiff.nets import unet_2d_condition as u
from msdiff.recipes import family_of
from msdiff.recipes.gligen import gligen

FIXTURES = Path(__file__).parent / "fixtures" / "sd_k_gligen"
CASES = json.loads((FIXTURES / "cases.json").read_text())


@functools.lru_cache(maxsize=None)
def _components(folder: str):
    return msdiff.load_pipeline(FIXTURES / folder)


def _case(name: str):
    meta, d = CASES[name], dict(np.load(FIXTURES / f"{name}.npz"))
    kwargs = dict(meta["args"], noise=[d[f"noise_{i}"] for i in range(meta["num_noise"])])
    if "latents" in d:
        kwargs["latents"] = d["latents"]
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
    off = unet(*args, gligen=inputs + (Tensor(0.0, ms.float32),)).asnumpy()
    plain = unet(*args).asnumpy()
    assert np.array_equal(off, plain) and _rel(plain, d["expected"]) > 1e-2


def test_gligen_released_structure():
    """gligen/gligen-generation-text-box's UNet (config from public knowledge, built by diffusers on the meta
    device) maps parameter for parameter, with the same shapes."""
    with gzip.open(FIXTURES / "structure.json.gz") as f:
        s = json.loads(f.read())["gligen/gligen-generation-text-box/unet"]
    with no_init_parameters():
        cell = u.UNet2DConditionModel(u.config_from_diffusers(s["config"]))
    ours = {name: list(p.shape) for name, p in cell.parameters_and_names()}
    theirs = {u.map_weights(k): v for k, v in s["shapes"].items()}
    assert len(theirs) == len(s["shapes"]) and ours == theirs
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
