"""LoRA (msdiff.io.lora) against diffusers 0.35.2 + PEFT: UNet and text-encoder outputs and pipeline images.

Fixtures: tests/fixtures/lora (tools/fixtures/lora.py) on the tiny pipelines of tests/fixtures/pipelines.
Bounds: fp32 max abs <= 1e-4 and rel L2 <= 1e-5 (nets), images max abs <= 1e-4; PyNative and graph. Changing
adapter weights, swapping an adapter of the same ranks, fusing and unfusing must not recompile a step.
"""
import json
import pickle
from functools import lru_cache
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from _parity import assert_parity
from mindspore import Tensor
from mindspore.graph.api import ms_compile_cache
from safetensors.numpy import save_file

import msdiff
from msdiff.blocks.layers import Linear
from msdiff.blocks.lora import LoRALinear
from msdiff.io import LoadError
from msdiff.io.lora import (active_adapters, apply_addons, delete_adapters, fuse_lora, load_lora, lora_version,
                            parse_lora_option, set_adapters, unfuse_lora, unload_lora)
from msdiff.io.lora_keys import read_safetensors

FIX = Path(__file__).parent / "fixtures" / "lora"
PIPES = Path(__file__).parent / "fixtures" / "pipelines"
CASES = json.loads((FIX / "cases.json").read_text())


@lru_cache(maxsize=None)
def _arrays() -> dict:
    with np.load(FIX / "cases.npz") as f:
        return dict(f)


def _a(key: str) -> np.ndarray:
    return _arrays()[key]


def _sd(*loras):
    c = msdiff.load_pipeline(PIPES / "sd")
    for path, name in loras:
        load_lora(c, FIX / path, adapter_name=name)
    return c


def _unet_args(family: str) -> tuple:
    names = ("sample", "timestep", "encoder_hidden_states") + (("text_embeds", "time_ids") if family == "sdxl" else ())
    return tuple(Tensor(_a(f"{family}:{n}")) for n in names)


def _step_compiles(fn) -> int:
    """Graphs compiled so far for the python function fn (phases start with its module.qualname)."""
    return sum(1 for phase in ms_compile_cache if phase.startswith(f"{fn.__module__}.{fn.__name__}."))


def _check_sd(c, case: str, eps) -> None:
    assert_parity(eps, _a(f"{case}:eps"), f"{case} UNet")
    assert_parity(c.text_encoder(Tensor(_a(f"{case}:input_ids")))[0], _a(f"{case}:te"), f"{case} text encoder")


def test_sd_peft_and_kohya_adapters_pynative_and_graph(tmp_path):
    c = _sd(("sd_peft.safetensors", "a"), ("sd_kohya.safetensors", "b"))
    unet = c.unet
    args = _unet_args("sd")

    def sd_step(sample, t, ctx):
        return unet(sample, t, ctx)

    step = ms.jit(sd_step)
    version = lora_version(unet)
    for case in ("sd_a", "sd_b", "sd_ab"):
        set_adapters(c, CASES[case]["adapters"], CASES[case]["weights"])
        assert active_adapters(c).keys() == set(CASES[case]["adapters"])
        assert_parity(step(*args), _a(f"{case}:eps"), f"{case} UNet graph")
        te = c.text_encoder(Tensor(_a(f"{case}:input_ids")))[0]
        assert_parity(te, _a(f"{case}:te"), f"{case} text encoder")
    assert_parity(unet(*args), _a("sd_ab:eps"), "sd_ab UNet pynative")
    # fused: the same graph reads the fused weights; unfused restores every weight bit for bit
    before = {n: p.asnumpy().copy() for n, p in unet.parameters_and_names()}
    fuse_lora(c, lora_scale=0.8)
    _check_sd(c, "sd_ab_fused", step(*args))
    unfuse_lora(c)
    assert all(np.array_equal(p.asnumpy(), before[n]) for n, p in unet.parameters_and_names())
    assert_parity(step(*args), _a("sd_ab:eps"), "unfused UNet graph")
    # an adapter of the same ranks swapped in place: kohya b with up matrices x1.3 at weight 1 == b at 1.3
    tensors, _ = read_safetensors(FIX / "sd_kohya.safetensors")
    scaled = {k: (v * np.float32(1.3) if k.endswith("lora_up.weight") else v) for k, v in tensors.items()}
    swap = tmp_path / "b13.safetensors"
    save_file(scaled, str(swap))
    load_lora(c, swap, adapter_name="b", replace=True)
    set_adapters(c, ["b"], [1.0])
    assert_parity(step(*args), _a("sd_b:eps"), "swapped adapter graph")
    assert lora_version(unet) == version, "a same-rank swap must not change the net's structure"
    assert _step_compiles(sd_step) == 1, "weights, swaps, fuse and unfuse must not recompile the step"


def test_sdxl_sgm_kohya_and_peft_adapters():
    c = msdiff.load_pipeline(PIPES / "sdxl")
    load_lora(c, FIX / "sdxl_kohya.safetensors", adapter_name="c")
    load_lora(c, FIX / "sdxl_peft.safetensors", adapter_name="d")
    args = _unet_args("sdxl")
    for case in ("sdxl_c", "sdxl_cd"):
        set_adapters(c, CASES[case]["adapters"], CASES[case]["weights"])
        unet_out = c.unet(args[0], args[1], args[2], text_embeds=args[3], time_ids=args[4])
        assert_parity(unet_out, _a(f"{case}:eps"), f"{case} UNet")
        assert_parity(c.text_encoder(Tensor(_a(f"{case}:input_ids")))[0], _a(f"{case}:te"), f"{case} te")
        _, pooled, states = c.text_encoder_2(Tensor(_a(f"{case}:input_ids_2")))
        assert_parity(states[-2], _a(f"{case}:te2"), f"{case} te2 hidden_states[-2]")
        assert_parity(pooled, _a(f"{case}:te2_pooled"), f"{case} te2 text_embeds")


def test_pipeline_two_adapters_graph_without_recompiling():
    from msdiff.recipes import text_to_image

    c = _sd(("sd_peft.safetensors", "a"), ("sd_kohya.safetensors", "b"))
    kwargs = dict(negative_prompt="blurry", num_inference_steps=2, guidance_scale=7.5, height=64, width=64,
                  output_type="np")
    # PyNative parity is the UNet / text-encoder tests' (a PyNative pipeline run here costs minutes)
    for case, mode in (("sd_ab", "graph"), ("sd_a", "graph")):
        set_adapters(c, CASES[case]["adapters"], CASES[case]["weights"])
        compiled = len(ms_compile_cache)
        image = text_to_image(c, "a photo of a cat", latents=_a(f"{case}:pipe:latents"), mode=mode, **kwargs)
        got = np.asarray(image, np.float64)
        err = float(np.abs(got - _a(f"{case}:pipe:image")).max())
        assert err <= 1e-4, f"{case} {mode}: image max abs {err:.3g}"
        if case == "sd_a":
            assert len(ms_compile_cache) == compiled, "set_adapters recompiled the pipeline's step"


def _kohya_file(tmp_path, tensors: dict, name: str = "bad.safetensors") -> Path:
    path = tmp_path / name
    save_file(tensors, str(path))
    return path


def test_bad_files_are_refused(tmp_path):
    c = _sd()
    base = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    rank = _kohya_file(tmp_path, {f"{base}.lora_down.weight": np.ones((2, 8), np.float32),
                                  f"{base}.lora_up.weight": np.ones((8, 3), np.float32)})
    with pytest.raises(LoadError, match="down rank 2 but up rank 3"):
        load_lora(c, rank)
    with pytest.raises(LoadError, match="lora_te2_"):  # an SD-XL LoRA on SD: keys for another model
        load_lora(c, FIX / "sdxl_kohya.safetensors")
    with pytest.raises(LoadError, match="another model"):  # the SD-XL PEFT LoRA: shapes of another model
        load_lora(c, FIX / "sdxl_peft.safetensors", ignore_unmatched=True)
    unknown = _kohya_file(tmp_path, {"lora_unet_no_such_layer.lora_down.weight": np.ones((2, 8), np.float32),
                                     "lora_unet_no_such_layer.lora_up.weight": np.ones((8, 2), np.float32)})
    with pytest.raises(LoadError, match="lora_unet_no_such_layer.lora_down.weight"):
        load_lora(c, unknown)
    dora = _kohya_file(tmp_path, {f"{base}.lora_down.weight": np.ones((2, 8), np.float32),
                                  f"{base}.dora_scale": np.ones((1, 8), np.float32)})
    with pytest.raises(LoadError, match="DoRA"):
        load_lora(c, dora)
    pkl = tmp_path / "lora.bin"
    pkl.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(LoadError, match="pickle"):
        load_lora(c, pkl)
    disguised = tmp_path / "lora.safetensors"
    disguised.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(LoadError, match="pickle"):
        load_lora(c, disguised)
    assert lora_version(c.unet) == 0, "a refused file must leave the net untouched"
    load_lora(c, FIX / "sd_peft.safetensors", adapter_name="a")
    with pytest.raises(LoadError, match="already in use"):
        load_lora(c, FIX / "sd_kohya.safetensors", adapter_name="a")
    with pytest.raises(ValueError, match="no adapter named"):
        set_adapters(c, ["nope"])


def test_unload_delete_and_cli_addons():
    assert parse_lora_option("a/b.safetensors:0.7") == ("a/b.safetensors", 0.7)
    assert parse_lora_option("C:/x/b.safetensors") == ("C:/x/b.safetensors", 1.0)
    c = _sd()
    args = _unet_args("sd")
    names = apply_addons(c, loras=[(FIX / "sd_peft.safetensors", 1.0), (FIX / "sd_kohya.safetensors", 1.3)])
    assert [n for *_, n in names["loras"]] == ["lora_0", "lora_1"]
    set_adapters(c, ["lora_1"], [1.3])
    assert_parity(c.unet(*args), _a("sd_b:eps"), "adapter lora_1")
    delete_adapters(c, "lora_1")
    set_adapters(c, "lora_0")
    assert_parity(c.unet(*args), _a("sd_a:eps"), "after deleting lora_1")
    q = c.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1.to_q
    assert isinstance(q, LoRALinear)
    unload_lora(c)
    q = c.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1.to_q
    assert type(q) is Linear
    _check_sd(c, "sd_base", c.unet(*args))
