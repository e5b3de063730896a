"""Kandinsky 2.1 against diffusers 0.35.2 (fixture area kandinsky2): MultilingualCLIP (tokenizer.json ids, both
outputs fp32 rel L2 <= 1e-5) and KandinskyPipeline / KandinskyImg2ImgPipeline / KandinskyInpaintPipeline images
max abs <= 1e-4, PyNative fp32, from the same inputs and recorded noise (graph and fp16: the support rows)."""
import importlib
import json
from functools import lru_cache
from pathlib import Path

import mindspore as ms
import numpy as np
import PIL.Image
import pytest
from mindspore import Tensor
from mindspore.nn.utils import no_init_parameters
from test_unet_config import assert_one_to_one, msdiff_shapes

import msdiff
from msdiff.io.pipeline import Components
from msdiff.io.registry import net_entry, tokenizer_class
from msdiff.nets.multilingual_clip import config_from_diffusers, position_ids

k21 = importlib.import_module("msdiff.recipes.kandinsky21")
FIXTURES = Path(__file__).parent / "fixtures"
FIX = FIXTURES / "kandinsky2"
CASES = json.loads((FIX / "cases.json").read_text())
PROMPTS = ["a red cat", "", "a dog on the beach at night, oil painting of a very red cat"]


@lru_cache(maxsize=None)
def _text():
    return (msdiff.load(FIX, "mclip"),
            tokenizer_class("XLMRobertaTokenizerFast").from_pretrained(FIX / "xlmr_tokenizer"))


@lru_cache(maxsize=None)
def _components(name: str) -> Components:
    meta = CASES[name]
    folder, unet = meta["unet"].rsplit("/", 1)
    net, tok = _text()
    movq = msdiff.load_pipeline(FIXTURES / "kandinsky" / "k22").extra["movq"]
    return Components(unet=msdiff.load(FIXTURES / folder, unet), text_encoder=net, tokenizer=tok,
                      scheduler=meta["scheduler"], extra={"movq": movq})


def _case(name: str) -> dict:
    with np.load(FIX / f"{name}.npz") as f:
        return dict(f)


def test_tokenizer_and_text_encoder():
    d = _case("mclip")
    net, tok = _text()
    t = tok(PROMPTS, padding="max_length", max_length=77, truncation=True)
    assert np.array_equal(t.input_ids, d["input_ids"]) and np.array_equal(t.attention_mask, d["attention_mask"])
    short = tok(PROMPTS, padding="max_length", max_length=9, truncation=True)
    assert np.array_equal(short.input_ids, d["short_ids"]) and np.array_equal(short.attention_mask, d["short_mask"])
    proj, last = net(Tensor(d["input_ids"], ms.int32), Tensor(d["attention_mask"], ms.int32))
    for got, want in ((proj, d["projected"]), (last, d["last_hidden_state"])):
        got = got.asnumpy().astype(np.float64)
        rel = float(np.linalg.norm(got - want) / np.linalg.norm(want))
        assert rel <= 1e-5, rel


def test_position_ids_count_from_padding():
    ids = Tensor(np.array([[0, 7, 9, 2, 1, 1]], np.int32))
    assert position_ids(ids, 1).asnumpy().tolist() == [[2, 3, 4, 5, 1, 1]]


def test_config_errors():
    with pytest.raises(ValueError, match="hidden_act"):
        config_from_diffusers({"hidden_act": "relu"})
    with pytest.raises(ValueError, match="not implemented by msdiff"):
        config_from_diffusers({"is_a_new_key": 1})


@pytest.mark.parametrize("name", ["k21", "k21_img2img", "k21_inpaint"])
def test_pipeline_parity(name):
    d, meta = _case(name), CASES[name]
    kw = dict(meta["args"], mode="pynative", output_type="np", height=8, width=8)
    if "noise" in d:
        kw["noise"] = list(d["noise"])
    if "latents" in d:
        kw["latents"] = d["latents"]
    kw.update({k: PIL.Image.fromarray(d[k]) for k in ("image", "mask_image") if k in d})
    recipe = getattr(k21, "kandinsky21" + name[len("k21"):])
    got = recipe(_components(name), image_embeds=d["image_embeds"], negative_image_embeds=d["negative_image_embeds"],
                 **kw)
    assert got.shape == d["expected"].shape
    err = float(np.abs(got.astype(np.float64) - d["expected"]).max())
    assert err <= 1e-4, f"{name}: max abs {err:.3g}"


def test_img2img_noise_level_is_diffusers_fixed_schedule():
    a, b = k21.img2img_noise_level(0.6)
    acp = np.cumprod(1 - np.linspace(0.0001, 0.02, 1000))[598]
    assert abs(float(a) - np.sqrt(acp)) < 1e-6 and abs(float(b) - np.sqrt(1 - acp)) < 1e-6


@pytest.mark.parametrize("name", sorted(p.stem for p in (FIX / "structure").glob("*.json")))
def test_full_size_structure(name):
    """Released layouts (M-CLIP XLM-R large, the 2.2 prior's ViT-bigG image encoder, both inpainting UNets) built
    on torch's meta device: every parameter name and shape maps one to one."""
    doc = json.loads((FIX / "structure" / f"{name}.json").read_text())
    entry = net_entry(doc["config"]["_class_name"])
    with no_init_parameters():
        net = entry.cls(entry.config_from_diffusers(doc["config"]))
    assert_one_to_one(doc["params"], msdiff_shapes(net), entry.map_weights)


def test_cli_prepare_keeps_the_prompt_for_the_decoder():
    """msdiff generate on a KandinskyPipeline folder: the prior runs on --prompt, the 2.1 decoder gets it too."""
    import argparse

    from msdiff.recipes import family_of
    fam = family_of("KandinskyPipeline")
    args = argparse.Namespace(model=str(FIX), dtype="fp32")
    kwargs = {"prompt": "a red cat", "negative_prompt": "blurry", "prior": str(FIX / "prior"), "prior_steps": 2,
              "seed": 1, "mode": "pynative", "num_inference_steps": 2}
    recipe, out = fam.prepare(args, _components("k21"), kwargs)
    assert recipe is k21.kandinsky21 and out["prompt"] == "a red cat" and out["negative_prompt"] == "blurry"
    assert tuple(out["image_embeds"].shape) == (1, 12) and tuple(out["negative_image_embeds"].shape) == (1, 12)
    assert "seed" not in out and hasattr(out["noise"], "draw")
