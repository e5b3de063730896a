"""IP-Adapter (base; msdiff.io.ip_adapter) UNet outputs against diffusers 0.35.2's load_ip_adapter at scale 0.6.

Fixtures: tests/fixtures/lora/{sd_ip,sdxl_ip}.safetensors (tools/fixtures/lora.py). Bounds: fp32 max abs <= 1e-4
and rel L2 <= 1e-5; the scale is a Parameter (a new scale recompiles nothing).
"""
import json
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from _parity import assert_parity
from mindspore import Tensor
from mindspore.graph.api import ms_compile_cache
from safetensors.numpy import save_file

import msdiff
from msdiff.blocks.attention import Attention
from msdiff.io import LoadError
from msdiff.io.ip_adapter import (ip_adapter_tokens, load_ip_adapter, set_ip_adapter_scale, unload_ip_adapter,
                                  with_image_tokens)

FIX = Path(__file__).parent / "fixtures" / "lora"
PIPES = Path(__file__).parent / "fixtures" / "pipelines"
CASES = json.loads((FIX / "cases.json").read_text())


def _a(key: str) -> np.ndarray:
    with np.load(FIX / "cases.npz") as f:
        return f[key]


def _context(c, name: str) -> Tensor:
    tokens = ip_adapter_tokens(c, Tensor(_a(f"{name}:image_embeds")))
    return with_image_tokens(Tensor(_a(f"{name}:encoder_hidden_states")), tokens)


def test_sd_ip_adapter_graph_and_scale_without_recompiling():
    c = msdiff.load_pipeline(PIPES / "sd")
    load_ip_adapter(c, FIX / "sd_ip.safetensors", scale=0.0)
    unet = c.unet
    sample, t = Tensor(_a("sd_ip:sample")), Tensor(_a("sd_ip:timestep"))
    ctx = _context(c, "sd_ip")

    def ip_step(x, t, ctx):
        return unet(x, t, ctx)

    step = ms.jit(ip_step)
    step(sample, t, ctx)
    set_ip_adapter_scale(c, CASES["sd_ip"]["scale"])
    assert_parity(step(sample, t, ctx), _a("sd_ip:eps"), "SD IP-Adapter UNet graph")
    assert sum(p.startswith(f"{__name__}.ip_step.") for p in ms_compile_cache) == 1, "the scale recompiled the step"
    unload_ip_adapter(c)
    assert type(unet.down_blocks[1].attentions[0].transformer_blocks[0].attn2) is Attention


def test_sdxl_ip_adapter_pynative():
    c = msdiff.load_pipeline(PIPES / "sdxl")
    load_ip_adapter(c, FIX / "sdxl_ip.safetensors", scale=CASES["sdxl_ip"]["scale"])
    out = c.unet(Tensor(_a("sdxl_ip:sample")), Tensor(_a("sdxl_ip:timestep")), _context(c, "sdxl_ip"),
                 text_embeds=Tensor(_a("sdxl_ip:text_embeds")), time_ids=Tensor(_a("sdxl_ip:time_ids")))
    assert_parity(out, _a("sdxl_ip:eps"), "SD-XL IP-Adapter UNet")


def test_ip_adapter_for_another_model_is_refused(tmp_path):
    c = msdiff.load_pipeline(PIPES / "sd")
    with pytest.raises(LoadError, match="another"):
        load_ip_adapter(c, FIX / "sdxl_ip.safetensors")
    plus = tmp_path / "plus.safetensors"
    save_file({"image_proj.latents": np.zeros((1, 4, 16), np.float32)}, str(plus))
    with pytest.raises(LoadError, match="Plus"):
        load_ip_adapter(c, plus)
