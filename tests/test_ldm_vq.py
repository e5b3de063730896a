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
from msdiff.nets.vq_model import VQModelConfig, config_from_diffusers

FIX = Path(__file__).parent / "fixtures" / "ldm"


@lru_cache(maxsize=None)
def _vq(dtype: str):
    return msdiff.load(FIX / "vq", dtype=dtype)


@lru_cache(maxsize=None)
def _data() -> dict:
    with np.load(FIX / "vq.npz") as f:
        return dict(f)


def _assert_close(got, ref: np.ndarray, what: str, dtype: str):
    got = got.astype(ms.float32).asnumpy().astype(np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} vs {ref.shape}"
    diff = got - ref
    max_abs, rel = float(np.abs(diff).max()), float(np.linalg.norm(diff) / np.linalg.norm(ref))
    if dtype == "float32":
        assert max_abs <= 1e-4 and rel <= 1e-5, f"{what} fp32: max abs {max_abs:.3g}, rel L2 {rel:.3g}"
    else:
        assert rel <= 5e-3, f"{what} fp16: rel L2 {rel:.3g}"


def _run(vq, image, h):
    enc = vq.encode(image)
    _, indices = vq.quantize(enc)
    return enc, indices, vq.decode(h), vq.decode(h, force_not_quantize=True)


@pytest.mark.parametrize("mode", ["pynative", "jit"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
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
    _assert_close(enc, d["h"], "encode", dtype)
    np.testing.assert_array_equal(indices.asnumpy(), d["indices"])
    _assert_close(dec, d["decoded"], "decode", dtype)
    _assert_close(dec_nq, d["decoded_nq"], "decode force_not_quantize", dtype)


def test_vq_config():
    assert config_from_diffusers({"act_fn": "silu", "latent_channels": 3}) == VQModelConfig(latent_channels=3)
    with pytest.raises(ValueError, match="norm_type"):
        config_from_diffusers({"norm_type": "spatial"})
    with pytest.raises(ValueError, match="lookup_from_codebook"):
        config_from_diffusers({"lookup_from_codebook": True})
