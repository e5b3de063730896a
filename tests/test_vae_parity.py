"""AutoencoderKL parity with diffusers 0.35.2 on a tiny 3-level VAE: encode (mean, logvar), sample_latent,
decode, and tiled encode/decode (diffusers' enable_tiling, 32-pixel tiles on a 48x48 image).

fp32: max abs error <= 1e-4 and relative L2 <= 1e-5; fp16: relative L2 <= 5e-3 against diffusers fp32.
PyNative here; test_vae_jit.py runs encode/sample/decode under mindspore.jit.
"""
from functools import lru_cache
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

import msdiff
from _parity import assert_parity
from msdiff.nets.autoencoder_kl import sample_latent, tiled_decode, tiled_encode

FIX = Path(__file__).parent / "fixtures" / "sd_vae"


@lru_cache(maxsize=None)
def _vae(dtype: str):
    return msdiff.load(FIX / "vae", dtype=dtype)


@lru_cache(maxsize=None)
def _data() -> dict:
    with np.load(FIX / "vae.npz") as f:
        return dict(f)


def _encode_sample_decode(vae, image, noise, latent):
    mean, logvar = vae.encode(image)
    return mean, logvar, sample_latent(mean, logvar, noise), vae.decode(latent)


def check_encode_sample_decode(mode: str, dtype: str):
    """encode -> (mean, logvar), sample_latent with the fixture noise, decode of the fixture latent."""
    d = _data()
    vae = _vae(dtype)
    args = (ms.Tensor(d["image"]), ms.Tensor(d["noise"]), ms.Tensor(d["latent"]))
    if mode == "jit":
        def run(image, noise, latent):
            return _encode_sample_decode(vae, image, noise, latent)

        out = ms.jit(run)(*args)
    else:
        out = _encode_sample_decode(vae, *args)
    for got, key in zip(out, ("mean", "logvar", "latent", "decoded")):
        assert_parity(got, d[key], key, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_encode_sample_decode(dtype):
    check_encode_sample_decode("pynative", dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_tiled(dtype):
    d = _data()
    vae = _vae(dtype)
    mean, logvar = tiled_encode(vae, ms.Tensor(d["big_image"]))
    assert_parity(mean, d["tiled_mean"], "tiled mean", dtype)
    assert_parity(logvar, d["tiled_logvar"], "tiled logvar", dtype)
    assert_parity(tiled_decode(vae, ms.Tensor(d["big_latent"])), d["tiled_decoded"], "tiled decode", dtype)


def test_config_factors():
    vae = _vae("float32")
    assert vae.scaling_factor == 0.18215 and vae.shift_factor is None and vae.force_upcast is True
