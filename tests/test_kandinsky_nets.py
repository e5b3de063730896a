"""PriorTransformer, UnCLIPTextProjModel and MoVQ (VQModel, norm_type "spatial") against diffusers 0.35.2.

Bounds: fp32 max abs <= 1e-4 and relative L2 <= 1e-5, fp16 relative L2 <= 5e-3 against diffusers' fp32 output;
PyNative, plus one mindspore.jit case per net. Full-size released layouts: names and shapes one to one.
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
from msdiff.io.registry import net_entry

FIX = Path(__file__).parent / "fixtures" / "kandinsky"


@lru_cache(maxsize=None)
def _net(name: str, dtype: str):
    return msdiff.load(FIX / name, dtype=dtype)


@lru_cache(maxsize=None)
def _data(name: str) -> dict:
    with np.load(FIX / f"{name}.npz") as f:
        return {k: ms.Tensor(v) if not k.endswith("out") else v for k, v in f.items()}


def _run(fn, mode: str, *args):
    return ms.jit(fn)(*args) if mode == "jit" else fn(*args)


@pytest.mark.parametrize("dtype,mode", [("float32", "pynative"), ("float16", "pynative"), ("float32", "jit")])
def test_prior_parity(dtype, mode):
    d, net = _data("prior"), _net("prior", dtype)
    args = [d[f"masked:{k}"] for k in ("hidden_states", "timestep", "proj_embedding", "encoder_hidden_states",
                                       "attention_mask")]
    assert_parity(_run(net, mode, *args), d["masked:out"], f"prior masked {mode}", dtype)
    if mode == "pynative":
        assert_parity(net(*args[:4]), d["unmasked:out"], "prior unmasked", dtype)


def test_prior_post_process():
    d = _data("prior")
    out = _net("prior", "float32").post_process_latents(ms.Tensor(d["masked:out"]))
    assert_parity(out, d["post:out"], "prior post_process_latents")


@pytest.mark.parametrize("dtype,mode", [("float32", "pynative"), ("float16", "pynative")])
def test_text_proj_parity(dtype, mode):
    d, net = _data("text_proj"), _net("text_proj", dtype)

    def f(image, prompt, hidden):
        return net(image, prompt, hidden, True)

    context, time = _run(f, mode, d["image_embeddings"], d["prompt_embeds"], d["text_encoder_hidden_states"])
    with np.load(FIX / "text_proj.npz") as ref:
        assert_parity(context, ref["context"], f"text_proj context {mode}", dtype)
        assert_parity(time, ref["time"], f"text_proj time {mode}", dtype)


@pytest.mark.parametrize("name", sorted(p.stem for p in (FIX / "structure").glob("*.json")))
def test_full_size_structure(name):
    doc = json.loads((FIX / "structure" / f"{name}.json").read_text())
    entry = net_entry(doc["config"]["_class_name"])
    with no_init_parameters():
        net = entry.cls(entry.config_from_diffusers(doc["config"]))
    assert_one_to_one(doc["params"], msdiff_shapes(net), entry.map_weights)


@pytest.mark.parametrize("dtype,mode", [("float32", "pynative"), ("float16", "pynative"), ("float32", "jit")])
def test_movq_decode_parity(dtype, mode):
    """Kandinsky's call: movq.decode(latents, force_not_quantize=True)."""
    d, net = _data("movq"), _net("movq", dtype)

    def f(z):
        return net.decode(z, force_not_quantize=True)

    with np.load(FIX / "movq.npz") as ref:
        assert_parity(_run(f, mode, d["latents"]), ref["decoded"], f"movq decode {mode}", dtype)


def test_movq_encode_and_quantized_decode():
    d, net = _data("movq"), _net("movq", "float32")
    with np.load(FIX / "movq.npz") as ref:
        h = net.encode(d["image"])
        assert_parity(h, ref["encoded"], "movq encode")
        assert_parity(net.decode(ms.Tensor(ref["encoded"])), ref["quantized"], "movq quantized decode")
