"""UNet2DConditionModel structure and config handling.

Structure: for the full-size SD 1.5, SD 2.1 and SD-XL base configs, msdiff's parameter names and shapes
map one-to-one (through map_weights) onto the diffusers state-dict keys/shapes recorded by
tools/fixtures/sd_unet.py from a torch meta-device build. The msdiff nets are built inside
`mindspore.nn.utils.no_init_parameters()`, which leaves every Parameter uninitialised (shape and dtype
only, no buffer): SD-XL's 2.6 B parameters would otherwise allocate ~10 GB in fp32 and take minutes.
"""
import json
import math
from pathlib import Path

import pytest
from mindspore.nn.utils import no_init_parameters

from msdiff.nets import unet_2d_condition as unet

STRUCTURE = Path(__file__).parent / "fixtures" / "sd_unet" / "structure"


def msdiff_shapes(net) -> dict:
    """{parameter name: shape} of an msdiff net."""
    return {name: list(p.shape) for name, p in net.parameters_and_names()}


def assert_one_to_one(reference: dict, ours: dict, map_weights) -> None:
    """Every reference key maps to a distinct msdiff parameter of the same shape, and nothing is left over."""
    mapped = {map_weights(k): shape for k, shape in reference.items()}
    assert len(mapped) == len(reference), "map_weights sends two reference keys to one name"
    missing = sorted(set(mapped) - set(ours))
    extra = sorted(set(ours) - set(mapped))
    assert not missing and not extra, f"missing {missing[:5]} ({len(missing)}), extra {extra[:5]} ({len(extra)})"
    wrong = [(k, mapped[k], ours[k]) for k in mapped if mapped[k] != ours[k]]
    assert not wrong, f"shape mismatches: {wrong[:5]} ({len(wrong)})"


@pytest.mark.parametrize("name", ["sd15", "sd21", "sdxl_base"])
def test_full_size_structure(name):
    doc = json.loads((STRUCTURE / f"{name}.json").read_text())
    config = unet.config_from_diffusers(doc["config"])
    with no_init_parameters():
        net = unet.UNet2DConditionModel(config)
    assert_one_to_one(doc["params"], msdiff_shapes(net), unet.map_weights)


def test_full_size_parameter_counts():
    """The well-known sizes: SD 1.5 UNet 859.5 M parameters, SD-XL base 2567.5 M."""
    counts = {}
    for name in ("sd15", "sdxl_base"):
        params = json.loads((STRUCTURE / f"{name}.json").read_text())["params"]
        counts[name] = sum(math.prod(s) for s in params.values())
    assert round(counts["sd15"] / 1e6, 1) == 859.5
    assert round(counts["sdxl_base"] / 1e6, 1) == 2567.5


BASE = json.loads((STRUCTURE / "sd15.json").read_text())["config"]


@pytest.mark.parametrize("key, value", [
    ("class_embed_type", "simple_projection"), ("encoder_hid_dim_type", "ip_image_proj"),
    ("encoder_hid_dim_type", "text_proj"), ("attention_type", "gated-image"), ("cross_attention_norm", "layer_norm"),
    ("resnet_time_scale_shift", "ada_group"), ("mid_block_type", None), ("dual_cross_attention", True),
    ("addition_embed_type", "image"), ("time_embedding_type", "fourier"), ("act_fn", "mish"),
    ("timestep_post_act", "silu"), ("time_embedding_act_fn", "mish"), ("class_embeddings_concat", True),
    ("num_attention_heads", 8), ("down_block_types", ["AttnDownBlock2D", "DownBlock2D"]),
    ("some_future_key", 1),
])
def test_unsupported_config_is_named(key, value):
    with pytest.raises(ValueError, match=key if key != "down_block_types" else "AttnDownBlock2D"):
        unet.config_from_diffusers(dict(BASE, **{key: value}))


def test_inference_irrelevant_keys_are_ignored():
    cfg = unet.config_from_diffusers(dict(BASE, dropout=0.1, _diffusers_version="0.35.2", resnet_skip_time_act=False,
                                          addition_embed_type_num_heads=64, _name_or_path="x"))
    assert cfg.block_out_channels == (320, 640, 1280, 1280) and cfg.attention_head_dim == 8


def test_sdxl_config_fields():
    cfg = unet.config_from_diffusers(json.loads((STRUCTURE / "sdxl_base.json").read_text())["config"])
    assert cfg.addition_embed_type == "text_time" and cfg.transformer_layers_per_block == (1, 2, 10)
    assert cfg.projection_class_embeddings_input_dim == 2816 and cfg.use_linear_projection


def test_map_weights_is_identity():
    assert unet.map_weights("down_blocks.0.attentions.1.transformer_blocks.0.ff.net.0.proj.weight") == \
        "down_blocks.0.attentions.1.transformer_blocks.0.ff.net.0.proj.weight"
