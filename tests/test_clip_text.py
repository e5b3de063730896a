"""CLIP text encoders against transformers 4.57.1 (fixtures from tools/fixtures/clip.py)."""
import functools
import json
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore.nn.utils import no_init_parameters
from safetensors.numpy import load_file

import msdiff
from msdiff.nets import clip_text
from msdiff.nets.clip_text import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

FIXTURES = Path(__file__).parent / "fixtures" / "clip"
MODELS = ("text_encoder", "text_encoder_2")
CASES = ("prompts", "mask")


def _rel_l2(a, b):
    return float(np.linalg.norm((a - b).ravel()) / np.linalg.norm(b.ravel()))


@functools.lru_cache(maxsize=None)
def _net(model: str, dtype: str):
    return msdiff.load(FIXTURES / model, dtype=dtype)


def _run(net, ref, mode):
    ids = ms.Tensor(ref["input_ids"])
    mask = ms.Tensor(ref["attention_mask"]) if "attention_mask" in ref else None
    if mode == "jit":
        if mask is None:
            def fn(i):
                return net(i)
            out = ms.jit(fn)(ids)
        else:
            def fn(i, m):
                return net(i, m)
            out = ms.jit(fn)(ids, mask)
    else:
        out = net(ids, mask)
    last, pooled, states = out
    return [last.astype(ms.float32).asnumpy(), pooled.astype(ms.float32).asnumpy()] + \
        [h.astype(ms.float32).asnumpy() for h in states]


def _expected(ref):
    n = sum(1 for k in ref if k.startswith("hidden_states."))
    return [ref["last_hidden_state"], ref["pooled"]] + [ref[f"hidden_states.{i}"] for i in range(n)]


@pytest.mark.parametrize("mode", ["pynative", "jit"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("model", MODELS)
def test_parity_fp32(model, case, mode):
    ref = load_file(str(FIXTURES / f"io_{model}_{case}.safetensors"))
    got, want = _run(_net(model, "float32"), ref, mode), _expected(ref)
    assert len(got) == len(want)
    names = ["last_hidden_state", "pooled"] + [f"hidden_states.{i}" for i in range(len(want) - 2)]
    for name, g, w in zip(names, got, want):
        assert g.shape == w.shape, name
        assert np.abs(g - w).max() <= 1e-4, (name, np.abs(g - w).max())
        assert _rel_l2(g, w) <= 1e-5, (name, _rel_l2(g, w))


@pytest.mark.parametrize("mode", ["pynative"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("model", MODELS)
def test_parity_fp16(model, case, mode):
    ref = load_file(str(FIXTURES / f"io_{model}_{case}.safetensors"))
    net = _net(model, "float16")
    assert net.text_model.encoder.layers[0].mlp.fc1.weight.dtype == ms.float16
    got, want = _run(net, ref, mode), _expected(ref)
    for i, (g, w) in enumerate(zip(got, want)):
        assert _rel_l2(g, w) <= 5e-3, (i, _rel_l2(g, w))


def test_clip_skip_and_penultimate():
    ref = load_file(str(FIXTURES / "io_text_encoder_prompts.safetensors"))
    net = _net("text_encoder", "float32")
    last, _, states = net(ms.Tensor(ref["input_ids"]))
    assert len(states) == net.config.num_hidden_layers + 1
    np.testing.assert_array_equal(net.final_layer_norm(states[-1]).asnumpy(), last.asnumpy())
    skipped = net.final_layer_norm(states[-2]).asnumpy()  # clip_skip=1 as in diffusers' encode_prompt
    assert skipped.shape == last.shape and not np.allclose(skipped, last.asnumpy())


def test_pooling_rule_follows_eos_token_id():
    ref = load_file(str(FIXTURES / "io_text_encoder_2_mask.safetensors"))
    ids = ref["input_ids"]
    assert (ids[1] == 7).argmax() != ids[1].argmax()  # the fixture separates the two rules
    assert clip_text.config_from_diffusers(json.loads((FIXTURES / "text_encoder_2" / "config.json").read_text())
                                           ).eos_token_id == 7


def test_config_from_diffusers():
    d = json.loads((FIXTURES / "text_encoder" / "config.json").read_text())
    c = clip_text.config_from_diffusers(d)
    assert (c.hidden_size, c.num_hidden_layers, c.hidden_act, c.eos_token_id) == (32, 3, "quick_gelu", 2)
    assert clip_text.config_from_diffusers({}).hidden_size == 512  # transformers' defaults for missing keys
    assert clip_text.config_from_diffusers({}).eos_token_id == 49407
    assert CLIPTextConfig().hidden_size == 768 and CLIPTextConfig().eos_token_id == 2
    with pytest.raises(ValueError, match="hidden_act"):
        clip_text.config_from_diffusers(dict(d, hidden_act="relu"))
    with pytest.raises(ValueError, match="rotary_dim"):
        clip_text.config_from_diffusers(dict(d, rotary_dim=8))
    with pytest.raises(ValueError, match="text_config"):
        clip_text.config_from_diffusers({"model_type": "clip", "text_config": {}})


def test_map_weights():
    assert clip_text.map_weights("text_model.embeddings.position_ids") is None
    key = "text_model.encoder.layers.0.self_attn.q_proj.weight"
    assert clip_text.map_weights(key) == key
    assert clip_text.map_weights("text_projection.weight") == "text_projection.weight"
    assert clip_text.map_weights("encoder.layers.3.mlp.fc1.bias") == "text_model.encoder.layers.3.mlp.fc1.bias"


def test_sequence_too_long():
    net = _net("text_encoder", "float32")
    with pytest.raises(ValueError, match="max_position_embeddings"):
        net(ms.Tensor(np.zeros((1, 78), np.int64)))


@pytest.mark.parametrize("name", ["sd15_text_encoder", "sd21_text_encoder", "sdxl_text_encoder",
                                  "sdxl_text_encoder_2"])
def test_full_size_structure(name):
    entry = json.loads((FIXTURES / "structure.json").read_text())[name]
    config = clip_text.config_from_diffusers(entry["config"])
    cls = {"CLIPTextModel": CLIPTextModel,
           "CLIPTextModelWithProjection": CLIPTextModelWithProjection}[entry["config"]["architectures"][0]]
    with no_init_parameters():  # shapes only: no weight memory is allocated
        net = cls(config)
    ours = {n: list(p.shape) for n, p in net.parameters_and_names()}
    theirs = {}
    for key, shape in entry["params"]:
        mapped = clip_text.map_weights(key)
        if mapped is not None:
            theirs[mapped] = shape
    assert ours == theirs
    assert len(ours) == len(entry["params"])


def test_load_ignores_position_ids_buffer(tmp_path):
    """Older checkpoints (SD 1.5's text encoder) store embeddings.position_ids; it is not a weight."""
    from safetensors.numpy import save_file

    src = FIXTURES / "text_encoder"
    (tmp_path / "config.json").write_text((src / "config.json").read_text())
    weights = load_file(str(src / "model.safetensors"))
    weights["text_model.embeddings.position_ids"] = np.arange(77, dtype=np.int64)[None]
    save_file(weights, str(tmp_path / "model.safetensors"))
    net = msdiff.load(tmp_path)
    np.testing.assert_array_equal(net.text_model.final_layer_norm.weight.asnumpy(),
                                  weights["text_model.final_layer_norm.weight"])
