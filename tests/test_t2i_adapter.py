"""T2IAdapter (full, full-XL, light), the UNet fed with its features and the t2i_adapter recipe, against
diffusers 0.35.2.

Bounds: nets fp32 relative L2 <= 1e-5 and max abs <= 1e-4, fp16 relative L2 <= 5e-3 against diffusers' fp32
output; pipeline images fp32 max abs <= 1e-4. PyNative and graph mode (mindspore.jit / mode="graph").
"""
import importlib
import json
from functools import lru_cache
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from _parity import assert_parity

import msdiff
from msdiff.nets import t2i_adapter as ta

FIX = Path(__file__).parent / "fixtures" / "t2i_adapter"
CASES = json.loads((FIX / "cases.json").read_text())


@lru_cache(maxsize=None)
def _arrays(name: str) -> dict:
    with np.load(FIX / name) as f:
        return dict(f)


def _folder(case: str) -> Path:
    folder = CASES["nets"][case]["folder"]
    return FIX / "light" if folder == "light" else FIX / folder / "adapter"


@lru_cache(maxsize=None)
def _adapter(case: str, dtype: str):
    return msdiff.load(_folder(case), dtype=dtype)


def _image(case: str) -> ms.Tensor:
    return ms.Tensor(_arrays("nets.npz")[f"{case}:image"].astype(np.float32) / np.float32(255.0))


def _features(net, image, mode: str) -> tuple:
    if mode == "jit":
        def f(x):
            return net(x)

        return ms.jit(f)(image)
    return net(image)


NET_CASES = [(c, d, "pynative") for c in ("full", "full_xl", "light") for d in ("float32", "float16")] + \
    [("full", "float32", "jit")]  # graph mode of the others: the support matrix


@pytest.mark.parametrize("case,dtype,mode", NET_CASES)
def test_adapter_parity(case, dtype, mode):
    d = _arrays("nets.npz")
    features = _features(_adapter(case, dtype), _image(case), mode)
    assert isinstance(features, tuple) and len(features) == CASES["nets"][case]["num_features"]
    for i, f in enumerate(features):
        assert_parity(f, d[f"{case}:feature_{i}"], f"{case} feature_{i} {mode}", dtype)


@pytest.mark.parametrize("folder,dtype,mode", [("sd", "float32", "pynative"), ("sdxl", "float32", "pynative"),
                                               ("sd", "float16", "pynative"), ("sdxl", "float16", "pynative")])
def test_unet_with_adapter_features(folder, dtype, mode):
    """diffusers' down_intrablock_additional_residuals: sd (cross-attention blocks, then a plain one) and sdxl
    (plain first block, the last feature added after the mid block)."""
    meta = CASES["nets"][f"unet_{folder}"]
    d, nets = _arrays("unet.npz"), _arrays("nets.npz")
    unet = msdiff.load(FIX / folder / "unet", dtype=dtype)
    features = tuple(ms.Tensor(nets[f"{meta['case']}:feature_{i}"]) * meta["scale"]
                     for i in range(CASES["nets"][meta["case"]]["num_features"]))
    get = (lambda k: ms.Tensor(d[f"{folder}:{k}"]) if f"{folder}:{k}" in d else None)
    args = (get("sample"), get("timestep"), get("encoder_hidden_states"), get("text_embeds"), get("time_ids"),
            features)

    def f(x, t, ctx, te, ids, features):
        return unet(x, t, ctx, te, ids, None, None, None, features)

    out = ms.jit(f)(*args) if mode == "jit" else f(*args)
    assert_parity(out, d[f"{folder}:out"], f"unet {folder} + adapter features {mode}", dtype)


def test_config_errors():
    config = json.loads((FIX / "sd" / "adapter" / "config.json").read_text())
    assert ta.config_from_diffusers(config) == ta.T2IAdapterConfig(3, (4, 8, 8), 2, 8, "full_adapter")
    with pytest.raises(ValueError, match="adapter_type"):
        ta.config_from_diffusers(dict(config, adapter_type="medium_adapter"))
    with pytest.raises(ValueError, match="unknown config key"):
        ta.config_from_diffusers(dict(config, new_architecture_knob=3))
    with pytest.raises(ValueError, match="channels >= 4"):
        ta.config_from_diffusers(dict(config, adapter_type="light_adapter", channels=[2, 8]))
    assert ta.map_weights("adapter.body.0.resnets.0.block1.weight") == "adapter.body.0.resnets.0.block1.weight"


@pytest.mark.parametrize("folder", ["sd/adapter", "sdxl/adapter", "light"])
def test_parameter_names_equal_diffusers_keys(folder):
    from safetensors.numpy import load_file

    keys = set(load_file(str(FIX / folder / "diffusion_pytorch_model.safetensors")))
    net = ta.T2IAdapter(ta.config_from_diffusers(json.loads((FIX / folder / "config.json").read_text())))
    assert {name for name, _ in net.parameters_and_names()} == keys


def test_adapter_input_errors():
    net = _adapter("full", "float32")
    with pytest.raises(ValueError, match="divisible"):
        net(ms.Tensor(np.zeros((1, 3, 36, 32), np.float32)))
    with pytest.raises(ValueError, match="3-channel"):
        net(ms.Tensor(np.zeros((1, 1, 32, 32), np.float32)))
    assert net.total_downscale_factor == 32 and net.downscale_factor == 8
    assert _adapter("full_xl", "float32").total_downscale_factor == 32
    assert _adapter("light", "float32").total_downscale_factor == 32


def test_avg_pool_ceil_mode():
    x = np.arange(2 * 3 * 5 * 3, dtype=np.float32).reshape(2, 3, 5, 3)
    got = ta.avg_pool_2x2(ms.Tensor(x)).asnumpy()
    pad = np.full((2, 3, 6, 4), np.nan, np.float32)
    pad[:, :, :5, :3] = x
    want = np.nanmean(pad.reshape(2, 3, 3, 2, 2, 2), axis=(3, 5))
    np.testing.assert_allclose(got, want, rtol=1e-6)


@lru_cache(maxsize=None)
def _pipeline(folder: str):
    return msdiff.load_pipeline(FIX / folder)


def _pipeline_call(case: str, mode: str, **override):
    recipe = importlib.import_module("msdiff.recipes.t2i_adapter")

    meta = CASES["pipelines"][case]
    d = _arrays(f"{case}.npz")
    args = {k: v for k, v in meta["args"].items() if k != "output_type"}
    args.update(image=d["image"], latents=d["latents"], noise=[d[f"noise_{i}"] for i in range(meta["num_noise"])],
                output_type="np", mode=mode)
    if meta["adapter"] is not None:
        args["adapter"] = msdiff.load(FIX / meta["adapter"])
    args.update(override)
    return recipe.t2i_adapter(_pipeline(meta["folder"]), **args), d["expected"]


@pytest.mark.parametrize("case,mode", [("sd_adapter", "pynative"), ("sd_adapter", "graph"),
                                       ("sd_light_gray", "pynative"), ("sdxl_adapter", "pynative")])
def test_pipeline_parity(case, mode):
    import PIL.Image

    meta = CASES["pipelines"][case]
    got, expected = _pipeline_call(case, mode, image=PIL.Image.fromarray(_arrays(f"{case}.npz")["image"]))
    assert _pipeline(meta["folder"]).pipeline_class == meta["pipeline_class"]
    assert got.shape == expected.shape
    err = float(np.abs(got.astype(np.float64) - expected).max())
    assert err <= 1e-4, f"{case} {mode}: max abs {err:.3g}"


def test_load_pipeline_adapter_component():
    c = _pipeline("sdxl")
    assert isinstance(c.extra["adapter"], ta.T2IAdapter)
    assert c.extra["adapter"].config.adapter_type == "full_adapter_xl"


def test_adapter_image_preprocessing():
    from msdiff.recipes.t2i_adapter import adapter_image

    gray = _arrays("sd_light_gray.npz")["image"]
    x = adapter_image(gray[:, :56], 40, 56, channels=1)
    assert x.shape == (1, 1, 40, 56)
    np.testing.assert_array_equal(x.asnumpy()[0, 0], gray[:, :56] / np.float32(255.0))
    rgb = _arrays("sd_adapter.npz")["image"]
    two = adapter_image([rgb, rgb], 32, 32)
    assert two.shape == (2, 3, 32, 32)
    t = ms.Tensor(rgb.transpose(2, 0, 1)[None] / np.float32(255.0))
    np.testing.assert_array_equal(adapter_image(t, 32, 32).asnumpy(), two.asnumpy()[:1])


def test_features_batching():
    """diffusers' layout: one image for all rows; per-prompt images tiled as a whole batch, doubled for CFG."""
    from msdiff.recipes.t2i_adapter import adapter_features

    net, image = _adapter("full", "float32"), _image("full")
    one = net(image[:1])[0].asnumpy()
    f = adapter_features(net, image[:1], batch=3, num_images_per_prompt=3, scale=0.5, guidance=True)[0].asnumpy()
    assert f.shape[0] == 6
    np.testing.assert_allclose(f, np.concatenate([one * 0.5] * 6), rtol=1e-6)
    both = net(image)[0].asnumpy()
    f = adapter_features(net, image, batch=4, num_images_per_prompt=2)[0].asnumpy()
    np.testing.assert_allclose(f, np.concatenate([both, both]), rtol=1e-6)
    with pytest.raises(ValueError, match="2 condition images for 3 prompts"):
        adapter_features(net, image, batch=3)


@pytest.mark.parametrize("kwargs,match", [
    (dict(image=np.zeros((24, 32, 3), np.uint8)), "size"),
    (dict(image=ms.Tensor(np.zeros((1, 1, 32, 32), np.float32))), r"\(3, 32, 32\)"),
    (dict(image=None), "image="),
    (dict(adapter_conditioning_scale=[1.0, 0.5]), "adapter_conditioning_scale has 2 entries for 1 adapters"),
    (dict(adapter_conditioning_factor=1.5), "adapter_conditioning_factor"),
])
def test_call_errors(kwargs, match):
    recipe = importlib.import_module("msdiff.recipes.t2i_adapter")

    args = dict(image=np.zeros((32, 32, 3), np.uint8), height=32, width=32, num_inference_steps=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        recipe.t2i_adapter(_pipeline("sd"), "a cat", **args)


def test_needs_an_adapter():
    recipe = importlib.import_module("msdiff.recipes.t2i_adapter")

    with pytest.raises(ValueError, match="no 'adapter' component"):
        recipe.t2i_adapter(msdiff.load_pipeline(FIX.parent / "pipelines" / "sd"), "a cat", np.zeros((32, 32, 3)))
    with pytest.raises(ValueError, match="2 adapters need a list of 2 condition images"):
        recipe.t2i_adapter(_pipeline("sd"), "a cat", np.zeros((32, 32, 3)), adapter=[_adapter("full", "float32")] * 2)
