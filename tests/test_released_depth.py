"""Each family at its released checkpoint's depth and block structure, tiny widths, against diffusers 0.35.2 /
transformers 4.57.1 fp32 (tests/fixtures/released_depth, tools/fixtures/released_depth.py), in PyNative and in graph
mode (mindspore.jit): fp32 max abs <= 1e-4 and relative L2 <= 1e-5.

The released configs are written from public knowledge of the Hub repos' config.json files (not downloaded); the
generator checks on torch's meta device that each tiny config has exactly the released net's state-dict keys (same
depth and blocks, only the widths shrunk): SD-1.5 / SD-2.1 / SD-XL UNets (SD-XL's 1 / 2 / 10 transformer layers),
the SD VAE, CLIP text encoders of 12 / 23 / 32 layers, T5-XXL's 24-layer encoder, PixArt-XL's and DiT-XL/2's 28
blocks, LDMBert's 32 layers, the SD-1.5 ControlNet, ModelScope's UNet3D and SVD's spatio-temporal UNet. The weights
are seeded (fixtures.video.seeded_weights), drawn again here and loaded with msdiff.load and each net's
map_weights. Token counts are the pipelines' (CLIP and LDMBert 77, T5 PixArt's 120); latents are 8x8 (1x1 at the
4-level UNets' deepest level).

Cost: each family compiles once in graph mode (the UNets 10-30 s each on the 2-core CPU); the compiled graphs stay
in the process (module peak RSS ~3.4 GB): freeing them with ms.ms_memory_recycle() made the next compile or the
recycle itself hang (MindSpore 2.10, CPU).
"""
import json
import sys
from functools import lru_cache
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

import msdiff
from _parity import assert_parity

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "released_depth"
CASES = json.loads((FIX / "cases.json").read_text())


def _unet(net, sample, timestep, ctx):
    return (net(sample, timestep, ctx),)


def _unet_xl(net, sample, timestep, ctx, text_embeds, time_ids):
    return (net(sample, timestep, ctx, text_embeds, time_ids),)


def _svd(net, sample, timestep, ctx, added_time_ids):
    return (net(sample, timestep, ctx, added_time_ids),)


def _vae(net, z, x):
    return net.decode(z), net.moments(x)


def _clip(net, ids):
    last, pooled, states = net(ids)
    return last, pooled, states[-2]


def _t5(net, ids, mask):
    return (net(ids, mask),)


def _bert(net, ids):
    return (net(ids),)


def _pixart(net, sample, timestep, ctx, mask, resolution, aspect_ratio):
    return (net(sample, timestep, ctx, mask, resolution, aspect_ratio),)


def _dit(net, sample, timestep, labels):
    return (net(sample, timestep, labels),)


def _controlnet(net, sample, timestep, ctx, cond, scale):
    down, mid = net(sample, timestep, ctx, cond, scale)
    return tuple(down) + (mid,)


_UNET_IN = ("sample", "timestep", "encoder_hidden_states")
_CLIP = (_clip, ("input_ids",), ("last", "pooled", "penultimate"))
# family -> (call, fixture inputs in call order, fixture outputs in return order). DiT-XL is compared with diffusers
# computing its sinusoidal timestep embedding with a float64 phase, as ops.timestep_embedding does (compensated,
# exact to ~1e-7): diffusers' fp32 phase is up to 5e-5 off at t = 999, and 28 adaLN-Zero blocks carry that to
# 1.6e-5 relative L2 between plain diffusers and both msdiff and diffusers-with-the-exact-phase.
CALLS = {
    "sd15_unet": (_unet, _UNET_IN, ("out",)),
    "sd21_unet": (_unet, _UNET_IN, ("out",)),
    "sdxl_unet": (_unet_xl, _UNET_IN + ("text_embeds", "time_ids"), ("out",)),
    "sd_vae": (_vae, ("z", "x"), ("decoded", "moments")),
    "clip_l": _CLIP,
    "clip_h": _CLIP,
    "clip_bigg": _CLIP,
    "t5_xxl": (_t5, ("input_ids", "attention_mask"), ("last",)),
    "ldm_bert": (_bert, ("input_ids",), ("last",)),
    "pixart_xl": (_pixart, ("sample", "timestep", "encoder_hidden_states", "encoder_attention_mask", "resolution",
                            "aspect_ratio"), ("out",)),
    "dit_xl": (_dit, ("sample", "timestep", "class_labels"), ("float64_phase:out",)),
    "controlnet_sd15": (_controlnet, _UNET_IN + ("controlnet_cond", "conditioning_scale"),
                        tuple(f"down_{i}" for i in range(12)) + ("mid",)),
    "unet3d": (_unet, _UNET_IN, ("out",)),
    "svd_unet": (_svd, _UNET_IN + ("added_time_ids",), ("out",)),
}


def checkpoint(name: str) -> Path:
    """A checkpoint folder for family `name`: its config.json and its seeded weights (tools/support/video.py)."""
    if str(ROOT / "tools") not in sys.path:
        sys.path.insert(0, str(ROOT / "tools"))
    from support.video import checkpoint as seeded_checkpoint

    return seeded_checkpoint(FIX, name)


@lru_cache(maxsize=1)  # one family at a time: its two cases run one after the other
def net(name: str):
    return msdiff.load(checkpoint(name))


@lru_cache(maxsize=1)
def data(name: str) -> dict:
    with np.load(FIX / f"{name}.npz") as f:
        return dict(f)


def inputs(name: str) -> list:
    """The fixture inputs as Tensors (uint8 images as u8 / 255, as diffusers saw them)."""
    d = data(name)
    out = []
    for key in CALLS[name][1]:
        value = d[f"in:{key}"]
        out.append(ms.Tensor(value.astype(np.float32) / np.float32(255) if value.dtype == np.uint8 else value))
    return out


def run(name: str, mode: str) -> tuple:
    """The family's outputs in PyNative, or compiled with mindspore.jit (mode "graph")."""
    call = CALLS[name][0]
    cell = net(name)
    if mode != "graph":
        return call(cell, *inputs(name))

    def step(*xs):
        return call(cell, *xs)

    return ms.jit(step)(*inputs(name))


def test_every_family_has_a_call():
    assert sorted(CALLS) == sorted(CASES)


@pytest.mark.parametrize("name, mode", [(n, m) for n in sorted(CALLS) for m in ("pynative", "graph")])
def test_released_depth_parity(name, mode):
    outputs = CALLS[name][2]
    got = run(name, mode)
    assert len(got) == len(outputs), f"{name}: {len(got)} outputs, diffusers {len(outputs)}"
    for key, value in zip(outputs, got):
        assert_parity(value, data(name)[f"out:{key}"], f"{name} {mode} {key}")
