"""Textual inversion (msdiff.io.textual_inversion) against diffusers 0.35.2's load_textual_inversion.

Fixtures: tests/fixtures/lora (tools/fixtures/lora.py): a diffusers learned_embeds file (1 vector), an A1111
`emb_params` file (3 vectors, loaded as token "my-style"), an SD-XL `clip_l` / `clip_g` file (2 vectors).
Bounds: prompt embeddings fp32 max abs <= 1e-4 and rel L2 <= 1e-5; token ids equal.
"""
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from _parity import assert_parity
from safetensors.numpy import save_file

import msdiff
from msdiff.io import LoadError
from msdiff.io.textual_inversion import load_textual_inversion
from msdiff.recipes import encode_prompt, encode_prompt_xl

FIX = Path(__file__).parent / "fixtures" / "lora"
PIPES = Path(__file__).parent / "fixtures" / "pipelines"
CASES = json.loads((FIX / "cases.json").read_text())


def _a(key: str) -> np.ndarray:
    with np.load(FIX / "cases.npz") as f:
        return f[key]


def test_sd_diffusers_and_a1111_multi_vector_embeddings():
    c = msdiff.load_pipeline(PIPES / "sd")
    assert load_textual_inversion(c, FIX / "sd_ti_diffusers.safetensors") == "<cat-toy>"
    assert load_textual_inversion(c, FIX / "sd_ti_a1111.safetensors", token="my-style") == "my-style"
    case = CASES["sd_ti"]
    assert c.tokenizer.expand_multi_vector(case["prompt"]) == case["converted"]
    ids = c.tokenizer(case["prompt"]).input_ids
    np.testing.assert_array_equal(ids, _a("sd_ti:input_ids"))
    emb = encode_prompt(c, case["prompt"], case["negative_prompt"])
    assert_parity(emb.prompt_embeds, _a("sd_ti:prompt_embeds"), "prompt embeds")
    assert_parity(emb.negative_prompt_embeds, _a("sd_ti:negative_prompt_embeds"), "negative prompt embeds")
    with pytest.raises(LoadError, match="already in the tokenizer"):
        load_textual_inversion(c, FIX / "sd_ti_diffusers.safetensors")
    with pytest.raises(LoadError, match="SD-XL embedding"):
        load_textual_inversion(c, FIX / "sdxl_ti.safetensors")


def test_sdxl_two_encoder_embedding():
    c = msdiff.load_pipeline(PIPES / "sdxl")
    case = CASES["sdxl_ti"]
    assert load_textual_inversion(c, FIX / "sdxl_ti.safetensors", token=case["token"]) == case["token"]
    emb = encode_prompt_xl(c, case["prompt"], case["negative_prompt"])
    assert_parity(emb.prompt_embeds, _a("sdxl_ti:prompt_embeds"), "SD-XL prompt embeds")
    assert_parity(emb.pooled_prompt_embeds, _a("sdxl_ti:pooled"), "SD-XL pooled embeds")
    assert_parity(emb.negative_prompt_embeds, _a("sdxl_ti:negative_prompt_embeds"), "SD-XL negative embeds")


def test_bad_embeddings_are_refused(tmp_path):
    c = msdiff.load_pipeline(PIPES / "sd")
    pt = tmp_path / "emb.pt"
    pt.write_bytes(pickle.dumps({"string_to_param": {"*": [0.0]}}))
    with pytest.raises(LoadError, match="pickle"):
        load_textual_inversion(c, pt)
    wide = tmp_path / "wide.safetensors"
    save_file({"<wide>": np.ones((2, 768), np.float32)}, str(wide))
    with pytest.raises(LoadError, match="another model"):
        load_textual_inversion(c, wide)
    many = tmp_path / "many.safetensors"
    save_file({"a": np.ones(16, np.float32), "b": np.ones(16, np.float32)}, str(many))
    with pytest.raises(LoadError, match="not a textual-inversion embedding"):
        load_textual_inversion(c, many)
    assert "<wide>" not in c.tokenizer.vocab
