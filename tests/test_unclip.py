"""unCLIP / Karlo against diffusers 0.35.2 (fixture area unclip): UnCLIPPipeline (with and without guidance) and
UnCLIPImageVariationPipeline images max abs <= 1e-4 in PyNative fp32 from the same inputs and recorded noise; the
antialiased bicubic super-res input's weights; the three stages called one by one, the decoder in graph mode (the
other graph and fp16 cells: the support rows)."""
import importlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from mindspore import Tensor

import msdiff

unclip = importlib.import_module("msdiff.recipes.unclip")
FIX = Path(__file__).parent / "fixtures" / "unclip"
CASES = json.loads((FIX / "cases.json").read_text())


@lru_cache(maxsize=None)
def _components(folder: str):
    return msdiff.load_pipeline(FIX / folder)


def case_call(name: str, mode: str = "pynative"):
    """(msdiff's output, diffusers' fp32 output) of a recorded case."""
    meta = CASES[name]
    with np.load(FIX / f"{name}.npz") as f:
        d = dict(f)
    flat, noise = d["noise"], []
    for shape in meta["noise_shapes"]:
        n = int(np.prod(shape))
        noise.append(flat[:n].reshape(shape))
        flat = flat[n:]
    kw = dict(meta["args"], mode=mode, noise=noise, output_type="np")
    recipe = unclip.unclip_text_to_image
    if meta["pipeline_class"] == "UnCLIPImageVariationPipeline":
        kw["image"], recipe = PIL.Image.fromarray(d["image"]), unclip.unclip_image_variation
    return recipe(_components(meta["folder"]), **kw), d["expected"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_pipeline_parity(name):
    got, want = case_call(name)
    assert got.shape == want.shape
    err = float(np.abs(got.astype(np.float64) - want).max())
    assert err <= 1e-4, f"{name}: max abs {err:.3g}"


def test_bicubic_upscale_weights():
    """Each output pixel's weights sum to 1; a constant image stays constant; upscaling keeps the mean of a ramp."""
    m = unclip._bicubic_aa_matrix(8, 16)
    assert np.allclose(m.sum(1), 1.0)
    x = Tensor(np.full((1, 3, 8, 8), 0.3, np.float32))
    assert np.allclose(unclip.upscale_bicubic(x, 16, 16).asnumpy(), 0.3, atol=1e-7)


def test_stages_compose():
    """The three public stages called one after another give the pipeline's image; the decoder in graph mode (this
    file's one graph case: one compiled step)."""
    meta = CASES["text_no_cfg"]
    with np.load(FIX / "text_no_cfg.npz") as f:
        d = dict(f)
    shapes = meta["noise_shapes"]
    flat, noise = d["noise"], []
    for shape in shapes:
        noise.append(flat[:int(np.prod(shape))].reshape(shape))
        flat = flat[int(np.prod(shape)):]
    c, a = _components("text"), meta["args"]
    src = msdiff.samplers.NoiseSource(noise=noise)
    text = unclip.encode_prompt_unclip(c, a["prompt"], guidance=False)
    emb = unclip.unclip_prior(c, text, prior_num_inference_steps=2, guidance=False, noise=src, mode="pynative")
    small = unclip.unclip_decoder(c, emb, text, decoder_num_inference_steps=2, guidance=False, noise=src,
                                  mode="graph")
    big = unclip.unclip_super_res(c, small, super_res_num_inference_steps=2, noise=src, mode="pynative")
    got = msdiff.recipes.postprocess(big, "np")
    assert float(np.abs(got.astype(np.float64) - d["expected"]).max()) <= 1e-4


def test_bad_input():
    with pytest.raises(ValueError, match="pass prompt"):
        unclip.unclip_text_to_image(_components("text"), mode="pynative")
    with pytest.raises(ValueError, match="pass image"):
        unclip.unclip_image_variation(_components("variation"), mode="pynative")
    with pytest.raises(TypeError, match="seed="):
        unclip.unclip_text_to_image(_components("text"), "a cat", generator=0)


@pytest.mark.parametrize("name", sorted(p.stem for p in (FIX / "structure").glob("*.json")))
def test_full_size_structure(name):
    """karlo-v1-alpha's super-res UNet2DModel layout (config from public knowledge) built on torch's meta device:
    every parameter name and shape maps one to one."""
    from mindspore.nn.utils import no_init_parameters
    from test_unet_config import assert_one_to_one, msdiff_shapes

    from msdiff.io.registry import net_entry
    doc = json.loads((FIX / "structure" / f"{name}.json").read_text())
    entry = net_entry(doc["config"]["_class_name"])
    with no_init_parameters():
        net = entry.cls(entry.config_from_diffusers(doc["config"]))
    assert_one_to_one(doc["params"], msdiff_shapes(net), entry.map_weights)
