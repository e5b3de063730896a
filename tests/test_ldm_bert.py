"""LDMBertModel parity with diffusers 0.35.2 (LDMTextToImagePipeline's text encoder) on a tiny 2-layer model,
with and without an attention mask, PyNative and mindspore.jit: fp32 max abs <= 1e-4, relative L2 <= 1e-5.
"""
from functools import lru_cache
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

import msdiff
from _parity import assert_parity
from msdiff.nets.ldm_bert import LDMBertConfig, config_from_diffusers

FIX = Path(__file__).parent / "fixtures" / "ldm"


@lru_cache(maxsize=None)
def _bert():
    return msdiff.load(FIX / "bert", dtype="float32")


@pytest.mark.parametrize("mode", ["pynative", "jit"])
def test_ldm_bert_parity(mode):
    with np.load(FIX / "bert.npz") as f:
        d = dict(f)
    bert = _bert()
    ids, mask = ms.Tensor(d["input_ids"]), ms.Tensor(d["attention_mask"])

    def run(ids, mask):
        return bert(ids), bert(ids, mask)

    hidden, hidden_masked = ms.jit(run)(ids, mask) if mode == "jit" else run(ids, mask)
    assert_parity(hidden, d["hidden"], "no mask")
    assert_parity(hidden_masked, d["hidden_masked"], "mask")


def test_ldm_bert_config():
    cfg = config_from_diffusers({"d_model": 16, "dropout": 0.1, "model_type": "ldmbert", "scale_embedding": False})
    assert cfg == LDMBertConfig(d_model=16)
    with pytest.raises(ValueError, match="activation_function"):
        config_from_diffusers({"activation_function": "relu"})
    with pytest.raises(ValueError, match="rotary"):
        config_from_diffusers({"rotary": True})
