"""VQModel parity with diffusers 0.35.2 on a tiny 2-level VQ-VAE: encode, codebook indices, quantized and
unquantized decode, in PyNative and under mindspore.jit.

fp32: max abs <= 1e-4 and relative L2 <= 1e-5; fp16: relative L2 <= 5e-3 against diffusers fp32
(the codebook search runs in fp32; the fixture's nearest codes win by a margin > 1e-2).
"""
from functools import lru_cache
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

import msdiff
from _parity import assert_parity
from msdiff.nets.vq_model import VQModelConfig, config_from_diffusers

FIX = Path(__file__).parent / "fixtures" / "ldm"


@lru_cache(maxsize=None)
def _vq(dtype: str):
    return msdiff.load(FIX / "vq", dtype=dtype)


@lru_cache(maxsize=None)
def _data() -> dict:
    with np.load(FIX / "vq.npz") as f:
        return dict(f)


def _run(vq, image, h):
    enc = vq.encode(image)
    _, indices = vq.quantize(enc)
    return enc, indices, vq.decode(h), vq.decode(h, force_not_quantize=True)


@pytest.mark.parametrize("mode,dtype", [("pynative", "float32"), ("pynative", "float16"), ("jit", "float32")])
def test_vq_parity(mode, dtype):
    d = _data()
    vq = _vq(dtype)
    args = (ms.Tensor(d["image"]), ms.Tensor(d["h"]))
    if mode == "jit":
        def run(image, h):
            return _run(vq, image, h)

        enc, indices, dec, dec_nq = ms.jit(run)(*args)
    else:
        enc, indices, dec, dec_nq = _run(vq, *args)
    assert_parity(enc, d["h"], "encode", dtype)
    np.testing.assert_array_equal(indices.asnumpy(), d["indices"])
    assert_parity(dec, d["decoded"], "decode", dtype)
    assert_parity(dec_nq, d["decoded_nq"], "decode force_not_quantize", dtype)


def test_vq_config():
    assert config_from_diffusers({"act_fn": "silu", "latent_channels": 3}) == VQModelConfig(latent_channels=3)
    with pytest.raises(ValueError, match="norm_type"):
        config_from_diffusers({"norm_type": "layer"})
    with pytest.raises(ValueError, match="lookup_from_codebook"):
        config_from_diffusers({"lookup_from_codebook": True})
