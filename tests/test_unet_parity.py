"""UNet2DConditionModel parity with diffusers 0.35.2 on tiny SD1/SD2/SDXL/inpaint/LCM-like fixtures.

fp32: max abs error <= 1e-4 and relative L2 <= 1e-5; fp16 weights and activations: relative L2 <= 5e-3
against the diffusers fp32 output. This file runs PyNative; test_unet_jit*.py run the same checks under
mindspore.jit (split so each file stays short: one graph compile costs seconds on CPU).
"""
from functools import lru_cache
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

import msdiff

FIX = Path(__file__).parent / "fixtures" / "sd_unet"
NAMES = ["sd1", "sd2", "sdxl", "inpaint", "lcm"]
EXTRA = ("text_embeds", "time_ids", "timestep_cond")


@lru_cache(maxsize=None)
def _net(name: str, dtype: str):
    return msdiff.load(FIX / name, dtype=dtype)


@lru_cache(maxsize=None)
def _data(name: str) -> dict:
    with np.load(FIX / f"{name}.npz") as f:
        return dict(f)


def _call(net, mode: str, sample, timestep, context, extra: dict) -> np.ndarray:
    args = [ms.Tensor(sample), timestep if isinstance(timestep, int) else ms.Tensor(timestep), ms.Tensor(context)]
    args += [None if extra.get(k) is None else ms.Tensor(extra[k]) for k in EXTRA]
    if mode == "jit":
        def run(sample, timestep, context, text_embeds, time_ids, timestep_cond):
            return net(sample, timestep, context, text_embeds, time_ids, timestep_cond)

        out = ms.jit(run)(*args)
    else:
        out = net(*args)
    return out.astype(ms.float32).asnumpy()


def errors(got: np.ndarray, ref: np.ndarray):
    assert got.shape == ref.shape
    diff = got.astype(np.float64) - ref.astype(np.float64)
    return float(np.abs(diff).max()), float(np.linalg.norm(diff) / np.linalg.norm(ref))


def check(name: str, dtype: str, mode: str, sample_key="sample", timestep=None, out_key="out", batch=None):
    d = _data(name)
    sl = slice(None) if batch is None else slice(0, batch)
    extra = {k: d[k] for k in EXTRA if k in d}
    t = d["timestep"] if timestep is None else timestep
    got = _call(_net(name, dtype), mode, d[sample_key], t, d["encoder_hidden_states"][sl], extra)
    max_abs, rel = errors(got, d[out_key])
    if dtype == "float32":
        assert max_abs <= 1e-4 and rel <= 1e-5, f"{name} {mode} fp32: max abs {max_abs:.3g}, rel L2 {rel:.3g}"
    else:
        assert rel <= 5e-3, f"{name} {mode} fp16: rel L2 {rel:.3g}"


def check_odd_size(mode: str):
    """9x10 latents: the up path resizes to the skip sizes instead of doubling."""
    assert _data("sd1")["out_odd"].shape == (1, 4, 9, 10)
    check("sd1", "float32", mode, sample_key="odd_sample", timestep=np.array([300]), out_key="out_odd", batch=1)


@pytest.mark.parametrize("name", NAMES)
def test_fp32_parity(name):
    check(name, "float32", "pynative")


@pytest.mark.parametrize("name", NAMES)
def test_fp16_parity(name):
    check(name, "float16", "pynative")


def test_scalar_timestep():
    """A Python int timestep is broadcast over the batch, as diffusers does (under jit, pass a Tensor:
    a Python number is a compile-time constant)."""
    check("sd1", "float32", "pynative", timestep=500, out_key="out_scalar_t")


def test_odd_size_forwards_upsample_size():
    check_odd_size("pynative")
