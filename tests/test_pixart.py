"""PixArtTransformer2DModel and the PixArt-alpha recipe against diffusers 0.35.2 (tests/fixtures/pixart),
PyNative and graph."""
import json
import shutil
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from _parity import assert_parity
from mindspore import Tensor

import msdiff
from msdiff.nets.dit import DiTTransformer2DModel
from msdiff.nets.pixart import PixArtConfig, PixArtTransformer2DModel, config_from_diffusers, map_weights
from msdiff.nets.transformer_2d_legacy import config_from_diffusers as legacy_config

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "pixart"
IO = np.load(FIXTURES / "net.npz")
_NETS = {}


def _net(tag: str, dtype: str = "float32"):
    if (tag, dtype) not in _NETS:
        _NETS[tag, dtype] = msdiff.load(FIXTURES / tag, dtype=dtype)
    return _NETS[tag, dtype]


def _inputs(tag: str, key: str):
    x = IO[f"{tag}_wide" if key == "out_12" else f"{tag}_sample"]
    mask = None if key == "out_nomask" else Tensor(IO[f"{tag}_encoder_attention_mask"])
    return (Tensor(x), Tensor(IO[f"{tag}_timestep"]), Tensor(IO[f"{tag}_encoder_hidden_states"]), mask,
            Tensor(IO[f"{tag}_resolution"]), Tensor(IO[f"{tag}_aspect_ratio"]))


def _run(net, args, mode: str):
    x, t, c, m, r, a = args

    def masked(x_, t_, c_, m_, r_, a_):
        return net(x_, t_, c_, m_, r_, a_)

    def plain(x_, t_, c_, r_, a_):
        return net(x_, t_, c_, None, r_, a_)

    if m is None:
        return (ms.jit(plain) if mode == "jit" else plain)(x, t, c, r, a)
    return (ms.jit(masked) if mode == "jit" else masked)(x, t, c, m, r, a)


@pytest.mark.parametrize("mode", ("pynative", "jit"))
@pytest.mark.parametrize("dtype", ("float32", "float16"))
@pytest.mark.parametrize("tag", ("cond", "small"))
def test_net_matches_diffusers(tag, dtype, mode):
    net = _net(tag, dtype)
    for key in ("out", "out_nomask", "out_12"):  # caption mask, no mask, a 12x8 input (another position grid)
        out = _run(net, _inputs(tag, key), mode)
        assert_parity(out, IO[f"{tag}_{key}"].astype(np.float64), f"PixArt {tag} {key} {mode}", dtype)


def test_fixture_exercises_the_mask_and_conditions():
    for tag in ("cond", "small"):
        assert np.abs(IO[f"{tag}_out"] - IO[f"{tag}_out_nomask"]).max() > 1e-3
    net = _net("cond")
    x, t, c, m, r, a = _inputs("cond", "out")
    other = net(x, t, c, m, r * 2, a).asnumpy()
    assert np.abs(other - IO["cond_out"]).max() > 1e-3


def test_scalar_timestep_and_broadcast_conditions():
    net = _net("cond")
    x, _, c, m, r, a = _inputs("cond", "out")
    same_r, same_a = Tensor(np.repeat(IO["cond_resolution"][:1], 2, 0)), Tensor(np.repeat(IO["cond_aspect_ratio"][:1], 2, 0))
    both = net(x, Tensor(np.array([17, 17], np.int64)), c, m, same_r, same_a).asnumpy()
    np.testing.assert_array_equal(net(x, 17, c, m, same_r, same_a).asnumpy(), both)
    np.testing.assert_array_equal(net(x, Tensor(np.float32(17)), c, m, r[:1], a[:1]).asnumpy(), both)


def test_config_and_weight_names():
    d = json.loads((FIXTURES / "cond" / "config.json").read_text())
    cfg = config_from_diffusers(d)
    assert cfg == PixArtConfig(num_attention_heads=2, attention_head_dim=6, in_channels=4, out_channels=8,
                               num_layers=2, cross_attention_dim=12, sample_size=8, patch_size=2, caption_channels=16,
                               use_additional_conditions=True)
    assert cfg.additional_conditions and cfg.position_scale == 1.0
    assert PixArtConfig().additional_conditions and PixArtConfig().position_scale == 2.0
    assert not PixArtConfig(sample_size=64).additional_conditions
    from safetensors.numpy import load_file

    for tag in ("cond", "small"):
        with ms.nn.utils.no_init_parameters():
            net = PixArtTransformer2DModel(config_from_diffusers(json.loads((FIXTURES / tag / "config.json")
                                                                            .read_text())))
        ours = {name: tuple(p.shape) for name, p in net.parameters_and_names()}
        weights = load_file(FIXTURES / tag / "diffusion_pytorch_model.safetensors")
        assert ours == {map_weights(k): v.shape for k, v in weights.items()}


def test_legacy_transformer2dmodel_dispatches_on_norm_type(tmp_path):
    """PixArt-alpha/PixArt-XL-2-* save `_class_name: Transformer2DModel`; diffusers remaps by norm_type."""
    folder = tmp_path / "legacy"
    shutil.copytree(FIXTURES / "cond", folder)
    d = json.loads((folder / "config.json").read_text())
    d.update(_class_name="Transformer2DModel", num_vector_embeds=None, only_cross_attention=False,
             use_linear_projection=False, double_self_attention=False)
    (folder / "config.json").write_text(json.dumps(d))
    net = msdiff.load(folder)
    assert isinstance(net, PixArtTransformer2DModel)
    assert_parity(net(*_inputs("cond", "out")), IO["cond_out"].astype(np.float64), "legacy PixArt")
    assert isinstance(msdiff.load(FIXTURES.parent / "dit" / "small"), DiTTransformer2DModel)
    with pytest.raises(ValueError, match="'layer_norm'"):
        legacy_config({"_class_name": "Transformer2DModel", "in_channels": 4})
    with pytest.raises(ValueError, match="ada_norm_single"):
        config_from_diffusers(dict(d, norm_type="ada_norm_zero"))


@pytest.mark.parametrize("change, match", [
    (dict(norm_type="ada_norm_zero"), "norm_type"),
    (dict(attention_type="gated"), "attention_type"),
    (dict(num_embeds_ada_norm=None), "num_embeds_ada_norm"),
    (dict(activation_fn="relu"), "activation_fn"),
    (dict(attention_head_dim=5), "multiple of 4"),
    (dict(attention_head_dim=2), "multiple of 3"),
    (dict(mystery_key=1), "mystery_key"),
])
def test_unsupported_config_is_named(change, match):
    d = dict(json.loads((FIXTURES / "cond" / "config.json").read_text()), **change)
    with pytest.raises(ValueError, match=match):
        config_from_diffusers(d)


def test_wrong_inputs_are_named():
    net = _net("cond")
    x, t, c, m, r, a = _inputs("cond", "out")
    with pytest.raises(ValueError, match="expected latents"):
        net(Tensor(np.zeros((2, 3, 8, 8), np.float32)), t, c, m, r, a)
    with pytest.raises(ValueError, match="multiples"):
        net(Tensor(np.zeros((2, 4, 7, 8), np.float32)), t, c, m, r, a)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        net(x, t, Tensor(np.zeros((2, 7, 12), np.float32)), m, r, a)
    with pytest.raises(ValueError, match="additional conditions"):
        net(x, t, c, m)
