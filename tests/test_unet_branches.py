"""UNet2DConditionModel config branches (Kandinsky 2.1 / 2.2, IF, unCLIP, SD x4 upscaler) and diffusers'
added_cond_kwargs dict, against diffusers 0.35.2.

Bounds: fp32 max abs <= 1e-4 and relative L2 <= 1e-5, fp16 relative L2 <= 5e-3 against diffusers' fp32 output.
PyNative for every branch; one mindspore.jit case for the family (Kandinsky 2.2, its added_cond_kwargs dict built
inside the graph; the support matrix runs every branch in graph mode). SD-XL's explicit keywords as the dict. Full-size released layouts: names and shapes one to one.
"""
import json
from functools import lru_cache
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from _parity import assert_parity
from mindspore.nn.utils import no_init_parameters
from test_unet_config import assert_one_to_one, msdiff_shapes

import msdiff
from msdiff.nets import unet_2d_condition as unet

FIX = Path(__file__).parent / "fixtures" / "unet_branches"
ADDED = ("image_embeds", "text_embeds", "hint")
OTHER = ("class_labels", "attention_mask")


@lru_cache(maxsize=None)
def _net(name: str, dtype: str):
    return msdiff.load(FIX / name, dtype=dtype)


@lru_cache(maxsize=None)
def _data(name: str) -> dict:
    with np.load(FIX / f"{name}.npz") as f:
        return dict(f)


def _args(name: str) -> tuple:
    d = _data(name)
    context = ms.Tensor(d["encoder_hidden_states"]) if "encoder_hidden_states" in d else None
    added = {k: ms.Tensor(d[k]) for k in ADDED if k in d}
    other = {k: ms.Tensor(d[k]) for k in OTHER if k in d}
    return ms.Tensor(d["sample"]), ms.Tensor(d["timestep"]), context, added, other


def _call(net, mode: str, sample, t, context, added: dict, other: dict):
    keys = tuple(added)

    def f(sample, t, context, values, class_labels, attention_mask):
        return net(sample, t, context, added_cond_kwargs=dict(zip(keys, values)) if keys else None,
                   class_labels=class_labels, attention_mask=attention_mask)

    args = (sample, t, context, tuple(added.values()), other.get("class_labels"), other.get("attention_mask"))
    return ms.jit(f)(*args) if mode == "jit" else f(*args)


CASES = [(n, "float32", "pynative") for n in ("k22", "k22_hint", "k21", "if", "unclip", "projection", "upscaler")]
CASES += [(n, "float16", "pynative") for n in ("k22", "k21", "if")]
CASES += [("k22", "float32", "jit")]  # the added_cond_kwargs dict built inside the graph


@pytest.mark.parametrize("name,dtype,mode", CASES)
def test_branch_parity(name, dtype, mode):
    out = _call(_net(name, dtype), mode, *_args(name))
    assert_parity(out, _data(name)["out"], f"{name} {mode}", dtype)


SDXL = Path(__file__).parent / "fixtures" / "sd_unet"


@pytest.mark.parametrize("mode", ["pynative"])
def test_sdxl_added_cond_kwargs(mode):
    """diffusers' call form unet(x, t, ctx, added_cond_kwargs={"text_embeds", "time_ids"}) on the SD-XL fixture."""
    with np.load(SDXL / "sdxl.npz") as f:
        d = dict(f)
    net = msdiff.load(SDXL / "sdxl")

    def f(x, t, ctx, te, ids):
        return net(x, t, ctx, added_cond_kwargs={"text_embeds": te, "time_ids": ids})

    args = [ms.Tensor(d[k]) for k in ("sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids")]
    out = ms.jit(f)(*args) if mode == "jit" else f(*args)
    assert_parity(out, d["out"], f"sdxl added_cond_kwargs {mode}")


@pytest.mark.parametrize("name,missing", [("k22", "image_embeds"), ("k22_hint", "hint"), ("if", "class_labels")])
def test_missing_conditioning_is_named(name, missing):
    sample, t, context, added, other = _args(name)
    added.pop(missing, None)
    other.pop(missing, None)
    with pytest.raises(ValueError, match=missing):
        _call(_net(name, "float32"), "pynative", sample, t, context, added, other)


@pytest.mark.parametrize("name", sorted(p.stem for p in (FIX / "structure").glob("*.json")))
def test_full_size_structure(name):
    doc = json.loads((FIX / "structure" / f"{name}.json").read_text())
    with no_init_parameters():
        net = unet.UNet2DConditionModel(unet.config_from_diffusers(doc["config"]))
    assert_one_to_one(doc["params"], msdiff_shapes(net), unet.map_weights)


def test_config_checks():
    base = json.loads((FIX / "k22" / "config.json").read_text())
    assert unet.config_from_diffusers(dict(base, encoder_hid_dim_type=None)).encoder_hid_dim_type == "text_proj"
    for key, value, match in [("encoder_hid_dim", None, "encoder_hid_dim"),
                              ("class_embed_type", "projection", "projection_class_embeddings_input_dim"),
                              ("cross_attention_norm", "layer_norm", "cross_attention_norm"),
                              ("down_block_types", ["KDownBlock2D", "SimpleCrossAttnDownBlock2D"], "KDownBlock2D")]:
        with pytest.raises(ValueError, match=match):
            unet.config_from_diffusers(dict(base, **{key: value}))
