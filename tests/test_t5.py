"""T5EncoderModel and the T5 tokenizer against transformers 4.57.1 (tests/fixtures/pixart), PyNative and jit."""
import json
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from _parity import assert_parity
from mindspore import Tensor

import msdiff
from msdiff.io.paths import LoadError
from msdiff.nets.t5 import T5Config, T5EncoderModel, config_from_diffusers, map_weights, relative_position_buckets
from msdiff.tokenizer_t5 import T5Tokenizer
from _cases import net_cases

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "pixart"
IO = np.load(FIXTURES / "t5.npz")
_NETS = {}


def _net(tag: str, dtype: str = "float32"):
    if (tag, dtype) not in _NETS:
        _NETS[tag, dtype] = msdiff.load(FIXTURES / tag, dtype=dtype)
    return _NETS[tag, dtype]


def _run(net, ids, mask, mode):
    def f(i, m):
        return net(i, m)

    def g(i):
        return net(i)

    if mask is None:
        return (ms.jit(g) if mode == "jit" else g)(ids)
    return (ms.jit(f) if mode == "jit" else f)(ids, mask)


@pytest.mark.parametrize("tag,dtype,mode", net_cases(("t5", "t5_relu")))
def test_encoder_matches_transformers(tag, dtype, mode):
    net = _net(tag, dtype)
    ids, mask = Tensor(IO["input_ids"]), Tensor(IO["attention_mask"])
    out = _run(net, ids, mask, mode)
    assert out.dtype == ms.float16 if dtype == "float16" else ms.float32
    assert_parity(out, IO[f"{tag}_out"].astype(np.float64), f"T5 {tag} masked {mode}", dtype)
    assert_parity(_run(net, ids, None, mode), IO[f"{tag}_out_nomask"].astype(np.float64),
                  f"T5 {tag} no mask {mode}", dtype)


def test_int32_ids_and_batch_one():
    net = _net("t5")
    ids, mask = IO["input_ids"], IO["attention_mask"]
    out = net(Tensor(ids[1:].astype(np.int32)), Tensor(mask[1:].astype(np.int32)))
    assert_parity(out, IO["t5_out"][1:].astype(np.float64), "T5 row 1 alone")


@pytest.mark.parametrize("tag, nb, md", [("default", 32, 128), ("tiny", 8, 20)])
def test_relative_position_buckets(tag, nb, md):
    np.testing.assert_array_equal(relative_position_buckets(120, 120, nb, md), IO[f"buckets_{tag}"])


def test_config_and_weight_names():
    d = json.loads((FIXTURES / "t5" / "config.json").read_text())
    cfg = config_from_diffusers(d)
    assert cfg == T5Config(vocab_size=100, d_model=16, d_kv=8, d_ff=24, num_layers=2, num_heads=2,
                           relative_attention_num_buckets=8, relative_attention_max_distance=20,
                           feed_forward_proj="gated-gelu")
    from safetensors.numpy import load_file

    with ms.nn.utils.no_init_parameters():
        net = T5EncoderModel(cfg)
    ours = {name: tuple(p.shape) for name, p in net.parameters_and_names()}
    weights = load_file(FIXTURES / "t5" / "model.safetensors")
    assert ours == {map_weights(k): v.shape for k, v in weights.items() if map_weights(k)}
    assert map_weights("encoder.embed_tokens.weight") is None


def test_tied_embedding_copy_is_dropped(tmp_path):
    """Checkpoints that also store the tied `encoder.embed_tokens.weight` load the same net."""
    from safetensors.numpy import load_file, save_file

    weights = load_file(FIXTURES / "t5" / "model.safetensors")
    weights["encoder.embed_tokens.weight"] = weights["shared.weight"]
    (tmp_path / "config.json").write_text((FIXTURES / "t5" / "config.json").read_text())
    save_file(weights, tmp_path / "model.safetensors")
    net = msdiff.load(tmp_path)
    out = net(Tensor(IO["input_ids"]), Tensor(IO["attention_mask"]))
    assert_parity(out, IO["t5_out"].astype(np.float64), "T5 with tied copy")


def test_fp16_keeps_wo_in_fp32():
    net = _net("t5", "float16")
    dtypes = {name: p.dtype for name, p in net.parameters_and_names()}
    assert dtypes["encoder.block.0.layer.1.DenseReluDense.wo.weight"] == ms.float32
    assert dtypes["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"] == ms.float16


@pytest.mark.parametrize("change, match", [
    (dict(feed_forward_proj="gated-silu"), "feed_forward_proj"),
    (dict(dense_act_fn="relu"), "disagree"),
    (dict(model_type="mt5x"), "model_type"),
    (dict(model_type="umt5"), "umt5"),
    (dict(mystery_key=1), "mystery_key"),
    (dict(pruned_heads={"0": [1]}), "pruned_heads"),
])
def test_unsupported_config_is_named(change, match):
    d = dict(json.loads((FIXTURES / "t5" / "config.json").read_text()), **change)
    with pytest.raises(ValueError, match=match):
        config_from_diffusers(d)


def test_wrong_ids_rank():
    with pytest.raises(ValueError, match=r"\[batch, length\]"):
        _net("t5")(Tensor(np.zeros((4,), np.int32)))


def test_tokenizer_matches_t5_tokenizer_fast():
    ref = json.loads((FIXTURES / "tokens.json").read_text())
    tok = msdiff.io.registry.tokenizer_class("T5TokenizerFast").from_pretrained(FIXTURES / "pipeline" / "tokenizer")
    assert isinstance(tok, T5Tokenizer) and tok.model_max_length == 120
    toks = tok(ref["prompts"], padding="max_length", max_length=ref["max_length"])
    np.testing.assert_array_equal(toks.input_ids, ref["input_ids"])
    np.testing.assert_array_equal(toks.attention_mask, ref["attention_mask"])
    np.testing.assert_array_equal(tok(ref["prompts"], padding="longest", truncation=False).input_ids,
                                  ref["longest"])
    assert [bool(t) for t in toks.truncated] == [False, True, False, True, True]
    assert toks.truncated[4] == "red red red"


def test_tokenizer_without_tokenizer_json(tmp_path):
    (tmp_path / "spiece.model").write_bytes(b"")
    with pytest.raises(ValueError, match="spiece.model"):
        T5Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(LoadError):
        msdiff.load(FIXTURES / "tokenizer")  # a tokenizer folder is no net
