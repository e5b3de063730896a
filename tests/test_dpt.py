"""DPT-Hybrid depth estimation and DPTImageProcessor-equal preprocessing against transformers 4.57.1
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
from msdiff.blocks.bit import same_padding, standardize_weight
from msdiff.nets import dpt
from msdiff.nets.dpt import DPTConfig, DPTForDepthEstimation
from msdiff.recipes import dpt_image

FIXTURES = Path(__file__).parent / "fixtures" / "sd_extras"


FOLDERS = {"dpt": "depth2img/depth_estimator", "dpt_bn": "dpt_bn"}


@functools.lru_cache(maxsize=None)
def _net(model: str, dtype: str):
    return msdiff.load(FIXTURES / FOLDERS[model], dtype=dtype)


@functools.lru_cache(maxsize=None)
def _ref() -> dict:
    return dict(np.load(FIXTURES / "dpt.npz"))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("model", ["dpt", "dpt_bn"])
def test_parity(model, dtype):
    depth = _net(model, dtype)(ms.Tensor(_ref()["pixel_values"]))
    assert_parity(depth, _ref()[f"{model}:predicted_depth"], f"{model} predicted_depth", dtype)


def test_parity_jit():
    net = _net("dpt_bn", "float32")

    def fn(x):
        return net(x)
    assert_parity(ms.jit(fn)(ms.Tensor(_ref()["pixel_values"])), _ref()["dpt_bn:predicted_depth"], "dpt_bn jit")


def test_fp16_net_dtypes():
    net = _net("dpt_bn", "float16")
    assert net.dpt.embeddings.backbone.bit.embedder.convolution.weight.dtype == ms.float32  # BiT stays fp32
    assert net.dpt.encoder.layers[0].mlp.fc1.weight.dtype == ms.float16
    assert net.neck.fusion_stage.layers[0].residual_layer1.batch_norm1.running_var.dtype == ms.float16


def test_weight_standardisation_and_same_padding():
    w = ms.Tensor(np.random.default_rng(0).normal(2.0, 3.0, (4, 3, 3, 3)).astype(np.float32))
    s = standardize_weight(w, 1e-8).asnumpy().reshape(4, -1)
    np.testing.assert_allclose(s.mean(-1), 0, atol=1e-6)
    np.testing.assert_allclose(s.var(-1), 1, atol=1e-5)
    assert same_padding(64, 7, 2) == (2, 3) and same_padding(16, 3, 2) == (0, 1) and same_padding(15, 3, 2) == (1, 1)


def test_wrong_input_size():
    with pytest.raises(ValueError, match=r"pixel_values must be \[b, 3, 64, 64\]"):
        _net("dpt", "float32")(ms.Tensor(np.zeros((1, 3, 48, 48), np.float32)))


def test_config_from_diffusers():
    d = json.loads((FIXTURES / FOLDERS["dpt"] / "config.json").read_text())
    c = dpt.config_from_diffusers(d)
    assert (c.hidden_size, c.fusion_hidden_size, c.backbone_config.depths) == (32, 8, (1, 1, 2))
    assert DPTConfig().neck_hidden_sizes == (256, 512, 768, 768)
    with pytest.raises(ValueError, match="is_hybrid=False"):
        dpt.config_from_diffusers(dict(d, is_hybrid=False))
    with pytest.raises(ValueError, match="add_projection"):
        dpt.config_from_diffusers(dict(d, add_projection=True))
    with pytest.raises(ValueError, match="layer_type"):
        dpt.config_from_diffusers(dict(d, backbone_config=dict(d["backbone_config"], layer_type="preactivation")))
    with pytest.raises(ValueError, match="backbone_featmap_shape"):
        dpt.config_from_diffusers(dict(d, backbone_featmap_shape=[1, 64, 4, 4]))
    with pytest.raises(ValueError, match="frobnicate"):
        dpt.config_from_diffusers(dict(d, frobnicate=1))


def test_map_weights():
    assert dpt.map_weights("dpt.layernorm.weight") is None
    assert dpt.map_weights("neck.fusion_stage.layers.0.residual_layer1.batch_norm1.num_batches_tracked") is None
    assert dpt.map_weights("dpt.encoder.layer.3.attention.attention.query.bias") == \
        "dpt.encoder.layers.3.self_attn.q_proj.bias"
    assert dpt.map_weights("dpt.encoder.layer.11.output.dense.weight") == "dpt.encoder.layers.11.mlp.fc2.weight"
    assert dpt.map_weights("neck.reassemble_stage.readout_projects.2.0.weight") == \
        "neck.reassemble_stage.readout_projects.2.weight"
    assert dpt.map_weights("head.head.4.bias") == "head.conv3.bias"


def test_full_size_structure():
    entry = json.loads((FIXTURES / "structure.json").read_text())["dpt_hybrid_midas"]
    with no_init_parameters():  # shapes only: no weight memory is allocated
        net = DPTForDepthEstimation(dpt.config_from_diffusers(entry["config"]))
    ours = {n: list(p.shape) for n, p in net.parameters_and_names()}
    theirs = {dpt.map_weights(k): s for k, s in entry["params"] if dpt.map_weights(k)}
    assert ours == theirs
    assert len(entry["params"]) - len(theirs) == 2  # dpt.layernorm weight and bias: not used by the depth net


# DPTImageProcessor -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _processor_ref():
    return dict(np.load(FIXTURES / "dpt_image.npz")), json.loads((FIXTURES / "dpt_image.json").read_text())


@pytest.mark.parametrize("case", json.loads((FIXTURES / "dpt_image.json").read_text())["cases"])
def test_dpt_image_processor(case):
    arrays, meta = _processor_ref()
    spec = meta["cases"][case]
    image = arrays[f"{case}:image"]
    if spec["pil_mode"]:
        image = PIL.Image.fromarray(image, spec["pil_mode"])
    got = dpt_image.preprocess(image, dpt_image.dpt_image_config(spec["config"])).asnumpy()
    want = arrays[f"{case}:pixel_values"]
    assert got.shape == want.shape and got.dtype == want.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_dpt_image_errors():
    with pytest.raises(ValueError, match="size_divisor"):
        dpt_image.dpt_image_config({"do_pad": True})
    with pytest.raises(ValueError, match="crop_size"):
        dpt_image.dpt_image_config({"crop_size": 224})
    with pytest.raises(ValueError, match="expected an RGB image"):
        dpt_image.preprocess(PIL.Image.new("L", (20, 20)))


@pytest.mark.parametrize("size", [(64, 96), (296, 200), (16, 24)])
def test_depth_condition(size):
    arrays = _processor_ref()[0]
    got = dpt_image.depth_condition(arrays["depth:input"], *size).asnumpy()
    want = arrays[f"depth:{size[0]}x{size[1]}"]
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5


def test_depth_condition_errors():
    with pytest.raises(ValueError, match=r"\[batch, height, width\]"):
        dpt_image.depth_condition(np.ones((1, 1, 8, 8)), 64, 64)
    with pytest.raises(ValueError, match="constant"):
        dpt_image.depth_condition(np.ones((1, 8, 8)), 64, 64)
