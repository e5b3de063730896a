"""ControlNetModel, the UNet fed with its residuals, and the controlnet recipe, against diffusers 0.35.2.

Bounds: nets fp32 relative L2 <= 1e-5 and max abs <= 1e-4, fp16 relative L2 <= 5e-3 against diffusers' fp32
output; pipeline images fp32 max abs <= 1e-4. PyNative and graph mode (mindspore.jit / mode="graph").
"""
import importlib
import dataclasses
import json
from functools import lru_cache
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from _parity import assert_parity

import msdiff
from msdiff.nets import controlnet as cn

FIX = Path(__file__).parent / "fixtures" / "controlnet"
CASES = json.loads((FIX / "cases.json").read_text())


@lru_cache(maxsize=None)
def _nets() -> dict:
    with np.load(FIX / "nets.npz") as f:
        return dict(f)


@lru_cache(maxsize=None)
def _controlnet(case: str, dtype: str):
    net = msdiff.load(FIX / CASES["nets"][case]["folder"] / "controlnet", dtype=dtype)
    if case != "pool_bgr":
        return net
    config = dataclasses.replace(net.config, global_pool_conditions=True, controlnet_conditioning_channel_order="bgr")
    pool = cn.ControlNetModel(config, dtype=net.compute_dtype)
    source = dict(net.parameters_and_names())
    for name, p in pool.parameters_and_names():
        p.set_data(source[name])
    pool.set_train(False)
    return pool


def _inputs(case: str) -> tuple:
    d = _nets()
    get = (lambda k: None if f"{case}:{k}" not in d else ms.Tensor(d[f"{case}:{k}"]))
    cond = ms.Tensor(d[f"{case}:controlnet_cond"].astype(np.float32) / np.float32(255.0))
    return (get("sample"), get("timestep"), get("encoder_hidden_states"), cond, get("text_embeds"), get("time_ids"))


def _run(net, mode: str, args: tuple, scale: float, guess: bool):
    sample, t, ctx, cond, te, ids = args
    if mode == "jit":
        def f(sample, t, ctx, cond, te, ids):
            return net(sample, t, ctx, cond, scale, te, ids, guess)

        return ms.jit(f)(*args)
    return net(sample, t, ctx, cond, scale, te, ids, guess)


NET_CASES = [(c, "float32", "pynative") for c in ("sd_scale", "sd_guess", "sdxl", "sdxl_guess", "pool_bgr")] + \
    [("sd_scale", "float16", "pynative"), ("sdxl", "float16", "pynative"), ("sd_scale", "float32", "jit")]
# graph mode and fp16 of every other case: the support matrix (docs/SUPPORT.md) runs them


@pytest.mark.parametrize("case,dtype,mode", NET_CASES)
def test_controlnet_parity(case, dtype, mode):
    meta = CASES["nets"][case]
    d = _nets()
    down, mid = _run(_controlnet(case, dtype), mode, _inputs(case), meta["conditioning_scale"], meta["guess_mode"])
    assert len(down) == meta["num_down"]
    for i, r in enumerate(down):
        assert_parity(r, d[f"{case}:down_{i}"], f"{case} down_{i} {mode}", dtype)
    assert_parity(mid, d[f"{case}:mid"], f"{case} mid {mode}", dtype)


@pytest.mark.parametrize("mode", ["pynative"])
def test_unet_with_controlnet_residuals(mode):
    """The sd pipeline UNet fed with the sd_scale residuals (diffusers' down/mid_block_additional_residual)."""
    d, nets = np.load(FIX / "unet.npz"), _nets()
    unet = msdiff.load(FIX / "sd" / "unet")
    down = tuple(ms.Tensor(nets[f"sd_scale:down_{i}"]) for i in range(CASES["nets"]["sd_scale"]["num_down"]))
    mid = ms.Tensor(nets["sd_scale:mid"])
    args = (ms.Tensor(d["sample"]), ms.Tensor(d["timestep"]), ms.Tensor(d["encoder_hidden_states"]), down, mid)

    def f(x, t, ctx, down, mid):
        return unet(x, t, ctx, None, None, None, down, mid)

    out = ms.jit(f)(*args) if mode == "jit" else f(*args)
    assert_parity(out, d["out"], f"unet + controlnet residuals {mode}")


def test_config_errors():
    config = json.loads((FIX / "sd" / "controlnet" / "config.json").read_text())
    assert cn.config_from_diffusers(config).conditioning_embedding_out_channels == (4, 4, 8, 8)
    for key, value in [("class_embed_type", "projection"), ("mid_block_type", "UNetMidBlock2D"),
                       ("controlnet_conditioning_channel_order", "rgba"), ("addition_embed_type", "text")]:
        with pytest.raises(ValueError, match=key):
            cn.config_from_diffusers(dict(config, **{key: value}))
    with pytest.raises(ValueError, match="block type"):
        cn.config_from_diffusers(dict(config, down_block_types=["DownBlock2D", "AttnDownBlock2D"]))
    with pytest.raises(ValueError, match="unknown config key"):
        cn.config_from_diffusers(dict(config, new_architecture_knob=3))
    assert cn.map_weights("controlnet_down_blocks.0.weight") == "controlnet_down_blocks.0.weight"


def test_parameter_names_equal_diffusers_keys():
    from safetensors.numpy import load_file

    keys = set(load_file(str(FIX / "sdxl" / "controlnet" / "diffusion_pytorch_model.safetensors")))
    net = cn.ControlNetModel(cn.config_from_diffusers(json.loads((FIX / "sdxl" / "controlnet" /
                                                                  "config.json").read_text())))
    assert {name for name, _ in net.parameters_and_names()} == keys


@lru_cache(maxsize=None)
def _pipeline(folder: str):
    return msdiff.load_pipeline(FIX / folder)


def _pipeline_call(case: str, mode: str, **override):
    recipe = importlib.import_module("msdiff.recipes.controlnet")

    meta = CASES["pipelines"][case]
    with np.load(FIX / f"{case}.npz") as f:
        d = dict(f)
    args = {k: v for k, v in meta["args"].items() if k not in ("output_type",)}
    args.update(image=d["image"], latents=d["latents"], noise=[d[f"noise_{i}"] for i in range(meta["num_noise"])],
                output_type="np", mode=mode)
    args.update(override)
    return recipe.controlnet(_pipeline(meta["folder"]), **args), d["expected"]


@pytest.mark.parametrize("case,mode", [("sd_controlnet", "pynative"), ("sd_controlnet", "graph"),
                                       ("sd_controlnet_guess", "pynative"), ("sdxl_controlnet", "pynative")])
def test_pipeline_parity(case, mode):
    import PIL.Image

    meta = CASES["pipelines"][case]
    with np.load(FIX / f"{case}.npz") as f:
        image = PIL.Image.fromarray(f["image"])
    got, expected = _pipeline_call(case, mode, image=image)
    assert _pipeline(meta["folder"]).pipeline_class == meta["pipeline_class"]
    assert got.shape == expected.shape
    err = float(np.abs(got.astype(np.float64) - expected).max())
    assert err <= 1e-4, f"{case} {mode}: max abs {err:.3g}"


def test_load_pipeline_controlnet_component():
    c = _pipeline("sd")
    assert isinstance(c.extra["controlnet"], cn.ControlNetModel)
    assert c.unet is not None and c.text_encoder is not None


def test_control_image_preprocessing():
    from msdiff.recipes.controlnet import control_image

    with np.load(FIX / "sd_controlnet_guess.npz") as f:
        image = f["image"]
    x = control_image(image[:32, :40], 32, 40, batch=4, num_images_per_prompt=2)
    assert x.shape == (4, 3, 32, 40)
    np.testing.assert_array_equal(x.asnumpy()[3], image[:32, :40].transpose(2, 0, 1) / np.float32(255.0))
    two = control_image([image[:32, :40]] * 2, 32, 40, batch=4, num_images_per_prompt=2)
    assert two.shape == (4, 3, 32, 40)


@pytest.mark.parametrize("image,match", [
    (np.zeros((24, 40, 3), np.uint8), "size"),
    (np.zeros((32, 40, 4), np.uint8), "H x W x 3"),
    (ms.Tensor(np.zeros((1, 3, 16, 40), np.float32)), r"\(3, 32, 40\)"),
    (ms.Tensor(np.zeros((1, 1, 32, 40), np.float32)), r"\(3, 32, 40\)"),
])
def test_control_image_errors(image, match):
    recipe = importlib.import_module("msdiff.recipes.controlnet")

    with pytest.raises(ValueError, match=match):
        recipe.controlnet(_pipeline("sd"), "a cat", image, height=32, width=40, num_inference_steps=2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(control_guidance_start=0.6, control_guidance_end=0.4), "control_guidance_start"),
    (dict(controlnet_conditioning_scale=[1.0, 0.5]), "controlnet_conditioning_scale has 2 entries for 1 ControlNets"),
    (dict(image=None), "image="),
])
def test_call_errors(kwargs, match):
    recipe = importlib.import_module("msdiff.recipes.controlnet")

    args = dict(image=np.zeros((32, 32, 3), np.uint8), num_inference_steps=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        recipe.controlnet(_pipeline("sd"), "a cat", **args)


def test_needs_a_controlnet():
    recipe = importlib.import_module("msdiff.recipes.controlnet")

    with pytest.raises(ValueError, match="no 'controlnet' component"):
        recipe.controlnet(msdiff.load_pipeline(FIX.parent / "pipelines" / "sd"), "a cat", np.zeros((32, 32, 3)))
