"""DeepFloyd IF against diffusers 0.35.2 (fixture area deepfloyd_if): the act_fn "gelu" UNets (fp32 rel L2 <= 1e-5)
and the six IF pipelines, images max abs <= 1e-4 in PyNative fp32 from the same inputs and recorded noise; stage I's
Tensor output fed to stage II; one graph-mode case (the other graph and fp16 cells: the support rows)."""
import importlib
import json
from functools import lru_cache
from pathlib import Path

import mindspore as ms
import numpy as np
import PIL.Image
import pytest
from mindspore import Tensor

import msdiff
stage_1 = importlib.import_module("msdiff.recipes.deepfloyd_if")
stage_2 = importlib.import_module("msdiff.recipes.if_superres")

FIX = Path(__file__).parent / "fixtures" / "deepfloyd_if"
CASES = json.loads((FIX / "cases.json").read_text())
RECIPES = {"IFPipeline": stage_1.deepfloyd_if_text_to_image, "IFImg2ImgPipeline": stage_1.deepfloyd_if_img2img,
           "IFInpaintingPipeline": stage_1.deepfloyd_if_inpaint,
           "IFSuperResolutionPipeline": stage_2.deepfloyd_if_superres,
           "IFImg2ImgSuperResolutionPipeline": stage_2.deepfloyd_if_img2img_superres,
           "IFInpaintingSuperResolutionPipeline": stage_2.deepfloyd_if_inpaint_superres}


@lru_cache(maxsize=None)
def _components(folder: str):
    return msdiff.load_pipeline(FIX / folder)


def _case(name: str) -> dict:
    with np.load(FIX / f"{name}.npz") as f:
        return dict(f)


def case_call(name: str, mode: str = "pynative", dtype: str = "float32", components=None):
    """(msdiff's output, diffusers' fp32 output) of a recorded case."""
    meta, d = CASES[name], _case(name)
    flat, noise = d["noise"], []
    for shape in meta["noise_shapes"]:
        n = int(np.prod(shape))
        noise.append(flat[:n].reshape(shape))
        flat = flat[n:]
    kw = dict(meta["args"], mode=mode, noise=noise)
    for key in ("image", "mask_image", "original_image"):
        if key in d:
            kw[key] = PIL.Image.fromarray(d[key]) if d[key].dtype == np.uint8 else Tensor(d[key])
    comps = components or (_components(meta["folder"]) if dtype == "float32" else
                           msdiff.load_pipeline(FIX / meta["folder"], dtype=dtype))
    got = RECIPES[meta["pipeline_class"]](comps, **kw)
    return (got.asnumpy() if isinstance(got, Tensor) else got), d["expected"]


@pytest.mark.parametrize("stage", ["1", "2"])
def test_unet(stage):
    d = _case(f"unet_{stage}")
    unet = _components(f"stage_{stage}").unet
    kw = {"class_labels": Tensor(d["class_labels"])} if "class_labels" in d else {}
    out = unet(Tensor(d["sample"]), Tensor(d["timestep"]), Tensor(d["encoder_hidden_states"]), **kw).asnumpy()
    rel = float(np.linalg.norm(out.astype(np.float64) - d["out"]) / np.linalg.norm(d["out"]))
    assert unet.config.act_fn == "gelu" and rel <= 1e-5, rel


@pytest.mark.parametrize("name", sorted(CASES))
def test_pipeline_parity(name):
    got, want = case_call(name)
    assert got.shape == want.shape
    err = float(np.abs(got.astype(np.float64) - want).max())
    assert err <= 1e-4, f"{name}: max abs {err:.3g}"


def test_stage_1_output_feeds_stage_2():
    """msdiff's stage I Tensor, passed on as it is, gives diffusers' stage I -> II chain."""
    low, _ = case_call("text")
    meta, d = CASES["superres"], _case("superres")
    shapes = meta["noise_shapes"]
    flat = d["noise"].reshape(len(shapes), *shapes[0])
    got = stage_2.deepfloyd_if_superres(_components("stage_2"), image=Tensor(low), noise=list(flat),
                                        mode="pynative", **meta["args"])
    err = float(np.abs(got.astype(np.float64) - d["expected"]).max())
    assert err <= 1e-4, err


def test_graph_mode():
    got, want = case_call("inpaint", mode="graph")
    err = float(np.abs(got.astype(np.float64) - want).max())
    assert err <= 1e-4, err


def test_bad_input():
    comps = _components("stage_1")
    with pytest.raises(ValueError, match="clean_caption"):
        stage_1.deepfloyd_if_text_to_image(comps, "a cat", clean_caption=True, num_inference_steps=2, mode="pynative")
    with pytest.raises(ValueError, match="mask_image is required"):
        stage_1.deepfloyd_if_inpaint(comps, "a cat", image=PIL.Image.new("RGB", (8, 8)), num_inference_steps=2,
                                     mode="pynative")
    two = _components("stage_2")
    with pytest.raises(ValueError, match="noise_level"):
        stage_2.deepfloyd_if_superres(two, "a cat", image=Tensor(np.zeros((1, 3, 8, 8), np.float32)),
                                      noise_level=1000, num_inference_steps=2, mode="pynative")
    with pytest.raises(ValueError, match="original_image"):
        stage_2.deepfloyd_if_img2img_superres(two, image=Tensor(np.zeros((1, 3, 8, 8), np.float32)), prompt="a",
                                              mode="pynative")
    with pytest.raises(TypeError, match="seed="):
        stage_1.deepfloyd_if_text_to_image(comps, "a cat", generator=1)


def test_ddpm_settings_read_from_the_folder():
    """IF's scheduler_config.json (learned_range, dynamic thresholding) becomes msdiff's DDPM sampler unchanged."""
    config = _components("stage_1").scheduler
    assert config["variance_type"] == "learned_range" and config["thresholding"] is True
    smp = msdiff.samplers.resolve_sampler(config)
    assert smp.name == "ddpm" and stage_1.learned_variance(config, smp)
    assert ms.float32 == _components("stage_1").unet.compute_dtype


@pytest.mark.parametrize("name", sorted(p.stem for p in (FIX / "structure").glob("*.json")))
def test_full_size_structure(name):
    """IF-I-XL / IF-II-L UNet layouts (configs from public knowledge) built on torch's meta device: every parameter
    name and shape maps one to one."""
    from mindspore.nn.utils import no_init_parameters
    from test_unet_config import assert_one_to_one, msdiff_shapes

    from msdiff.io.registry import net_entry
    doc = json.loads((FIX / "structure" / f"{name}.json").read_text())
    entry = net_entry(doc["config"]["_class_name"])
    with no_init_parameters():
        net = entry.cls(entry.config_from_diffusers(doc["config"]))
    assert_one_to_one(doc["params"], msdiff_shapes(net), entry.map_weights)
