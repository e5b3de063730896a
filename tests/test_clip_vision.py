"""CLIP image encoders and CLIPImageProcessor-equal preprocessing against transformers 4.57.1
(fixtures from tools/fixtures/sd_extras.py)."""
import functools
import json
from pathlib import Path

import mindspore as ms
import numpy as np
import PIL.Image
import pytest
from _parity import assert_parity
from mindspore.nn.utils import no_init_parameters

import msdiff
from msdiff.nets import clip_vision
from msdiff.nets.clip_vision import CLIPVisionConfig, CLIPVisionModelWithProjection
from msdiff.recipes import clip_image

FIXTURES = Path(__file__).parent / "fixtures" / "sd_extras"
MODELS = ("image_encoder", "vision_model")
FOLDERS = {"image_encoder": "image_variation/image_encoder", "vision_model": "vision_model"}


@functools.lru_cache(maxsize=None)
def _net(model: str, dtype: str):
    return msdiff.load(FIXTURES / FOLDERS[model], dtype=dtype)


@functools.lru_cache(maxsize=None)
def _ref() -> dict:
    return dict(np.load(FIXTURES / "clip_vision.npz"))


def _check(model: str, dtype: str, jit: bool) -> None:
    ref, net = _ref(), _net(model, dtype)
    pixels = ms.Tensor(ref[f"{model}:pixel_values"])
    if jit:
        def fn(x):
            return net(x)
        last, pooled, states = ms.jit(fn)(pixels)
    else:
        last, pooled, states = net(pixels)
    assert_parity(last, ref[f"{model}:last"], f"{model} last_hidden_state", dtype)
    assert_parity(pooled, ref[f"{model}:pooled"], f"{model} pooled", dtype)
    assert len(states) == net.config.num_hidden_layers + 1
    for i, h in enumerate(states):
        assert_parity(h, ref[f"{model}:hidden_states.{i}"], f"{model} hidden_states.{i}", dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("model", MODELS)
def test_parity(model, dtype):
    _check(model, dtype, jit=False)


def test_parity_jit():
    _check("image_encoder", "float32", jit=True)


def test_fp16_weights():
    assert _net("image_encoder", "float16").visual_projection.weight.dtype == ms.float16


def test_wrong_image_size():
    with pytest.raises(ValueError, match=r"pixel_values must be \[b, 3, 30, 30\]"):
        _net("vision_model", "float32")(ms.Tensor(np.zeros((1, 3, 32, 32), np.float32)))


def test_config_from_diffusers():
    d = json.loads((FIXTURES / FOLDERS["image_encoder"] / "config.json").read_text())
    c = clip_vision.config_from_diffusers(d)
    assert (c.hidden_size, c.patch_size, c.image_size, c.hidden_act) == (32, 6, 30, "gelu")
    assert clip_vision.config_from_diffusers({}).patch_size == 32  # transformers' defaults for missing keys
    assert CLIPVisionConfig().hidden_size == 1024 and CLIPVisionConfig().patch_size == 14
    with pytest.raises(ValueError, match="hidden_act"):
        clip_vision.config_from_diffusers(dict(d, hidden_act="relu"))
    with pytest.raises(ValueError, match="vision_embed_dim"):
        clip_vision.config_from_diffusers(dict(d, vision_embed_dim=8))
    with pytest.raises(ValueError, match="vision_config"):
        clip_vision.config_from_diffusers({"model_type": "clip", "vision_config": {}})
    with pytest.raises(ValueError, match="patch_size"):
        clip_vision.config_from_diffusers(dict(d, image_size=31))


def test_map_weights():
    assert clip_vision.map_weights("vision_model.embeddings.position_ids") is None
    key = "vision_model.encoder.layers.0.self_attn.q_proj.weight"
    assert clip_vision.map_weights(key) == key
    assert clip_vision.map_weights("visual_projection.weight") == "visual_projection.weight"
    assert clip_vision.map_weights("pre_layrnorm.bias") == "vision_model.pre_layrnorm.bias"


@pytest.mark.parametrize("name", ["sd_image_variations_image_encoder", "ip_adapter_image_encoder"])
def test_full_size_structure(name):
    entry = json.loads((FIXTURES / "structure.json").read_text())[name]
    with no_init_parameters():  # shapes only: no weight memory is allocated
        net = CLIPVisionModelWithProjection(clip_vision.config_from_diffusers(entry["config"]))
    ours = {n: list(p.shape) for n, p in net.parameters_and_names()}
    theirs = {clip_vision.map_weights(k): s for k, s in entry["params"] if clip_vision.map_weights(k)}
    assert ours == theirs


# CLIPImageProcessor -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _processor_ref():
    return dict(np.load(FIXTURES / "clip_image.npz")), json.loads((FIXTURES / "clip_image.json").read_text())


@pytest.mark.parametrize("case", json.loads((FIXTURES / "clip_image.json").read_text())["cases"])
def test_clip_image_processor(case):
    arrays, meta = _processor_ref()
    spec = meta["cases"][case]
    image = arrays[f"{case}:image"]
    if spec["pil_mode"]:
        image = PIL.Image.fromarray(image, spec["pil_mode"])
    got = clip_image.preprocess(image, clip_image.clip_image_config(spec["config"])).asnumpy()
    want = arrays[f"{case}:pixel_values"]
    assert got.shape == want.shape and got.dtype == want.dtype == np.float32
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["lambdalabs", "modern"])
def test_clip_image_config_of_released_processors(name):
    entry = _processor_ref()[1]["parsed"][name]
    c = clip_image.clip_image_config(entry["config"])
    assert dict(c.size) == entry["size"] and c.crop_size == (entry["crop_size"]["height"], entry["crop_size"]["width"])
    assert (c.resample, c.do_rescale, c.rescale_factor) == (entry["resample"], entry["do_rescale"],
                                                            entry["rescale_factor"])
    assert list(c.image_mean) == entry["image_mean"] and list(c.image_std) == entry["image_std"]


def test_clip_image_errors(tmp_path):
    with pytest.raises(ValueError, match="do_pan_and_scan"):
        clip_image.clip_image_config({"do_pan_and_scan": True})
    with pytest.raises(ValueError, match="expected an RGB image"):
        clip_image.preprocess(np.zeros((20, 20, 4), np.uint8))
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        clip_image.preprocess(np.full((20, 20, 3), 1.5, np.float32))
    with pytest.raises(TypeError, match="PIL images or numpy"):
        clip_image.preprocess("image.png")
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        clip_image.load_clip_image_config(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": 20, "crop_size": 16}))
    assert clip_image.load_clip_image_config(tmp_path).crop_size == (16, 16)


def test_encode_image():
    net, ref = _net("image_encoder", "float32"), _ref()
    pixels = ms.Tensor(ref["image_encoder:pixel_values"])
    embeds = clip_image.encode_image(net, pixels, num_images_per_prompt=2).asnumpy()
    want = ref["image_encoder:pooled"]
    assert embeds.shape == (4, 1, want.shape[-1])
    np.testing.assert_allclose(embeds[:, 0], np.repeat(want, 2, axis=0), atol=1e-5)
    image = (np.random.default_rng(0).random((45, 37, 3)) * 255).astype(np.uint8)
    config = clip_image.clip_image_config({"size": 30, "crop_size": 30})
    got = clip_image.encode_image(net, image, config).asnumpy()
    direct = net(clip_image.preprocess(image, config))[1].asnumpy()
    np.testing.assert_array_equal(got[:, 0], direct)
