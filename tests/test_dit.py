"""DiTTransformer2DModel and the DiT recipe against diffusers 0.35.2 (tests/fixtures/dit), PyNative and graph."""
import json
import shutil
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from _parity import assert_parity
from mindspore import Tensor

import msdiff
from msdiff.io.paths import LoadError
from msdiff.nets.dit import DiTConfig, DiTTransformer2DModel, config_from_diffusers, map_weights
from msdiff.recipes.dit import dit
from _cases import mode_cases, net_cases

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "dit"
FOLDERS = {"pipe": FIXTURES / "pipeline" / "transformer", "small": FIXTURES / "small"}
CASES = json.loads((FIXTURES / "cases.json").read_text())
IO = np.load(FIXTURES / "net.npz")
_NETS, _PIPES = {}, {}


def _net(tag: str, dtype: str = "float32"):
    if (tag, dtype) not in _NETS:
        _NETS[tag, dtype] = msdiff.load(FOLDERS[tag], dtype=dtype)
    return _NETS[tag, dtype]


def _pipeline():
    if not _PIPES:
        _PIPES["dit"] = msdiff.load_pipeline(FIXTURES / "pipeline")
    return _PIPES["dit"]


def _run(net, x, t, y, mode: str):
    def f(x_in, t_in, y_in):
        return net(x_in, t_in, y_in)

    return (ms.jit(f) if mode == "jit" else f)(x, t, y)


def _inputs(tag: str, size: str):
    x = IO[f"{tag}_sample" if size == "out" else f"{tag}_big"]
    return Tensor(x), Tensor(IO[f"{tag}_timestep"]), Tensor(IO[f"{tag}_class_labels"].astype(np.int32))


@pytest.mark.parametrize("tag,dtype,mode", net_cases(("pipe", "small")))
def test_net_matches_diffusers(tag, dtype, mode):
    net = _net(tag, dtype)
    for size in ("out", "out_12"):  # the configured 8x8 input, and 12x12 (position table of another grid)
        out = _run(net, *_inputs(tag, size), mode)
        assert_parity(out, IO[f"{tag}_{size}"].astype(np.float64), f"DiT {tag} {size} {mode}", dtype)


def test_scalar_timestep_broadcasts():
    net = _net("small")
    x, t, y = _inputs("small", "out")
    both = net(x, Tensor(np.array([17, 17], np.int64)), y).asnumpy()
    np.testing.assert_array_equal(net(x, 17, y).asnumpy(), both)
    np.testing.assert_array_equal(net(x, Tensor(np.float32(17)), y).asnumpy(), both)


def test_config_and_weight_names():
    d = json.loads((FOLDERS["pipe"] / "config.json").read_text())
    cfg = config_from_diffusers(d)
    assert cfg == DiTConfig(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2,
                            sample_size=8, patch_size=2, num_embeds_ada_norm=1000)
    from safetensors.numpy import load_file

    with ms.nn.utils.no_init_parameters():
        net = DiTTransformer2DModel(cfg)
    ours = {name: tuple(p.shape) for name, p in net.parameters_and_names()}
    weights = load_file(FOLDERS["pipe"] / "diffusion_pytorch_model.safetensors")
    ref = {map_weights(k): v.shape for k, v in weights.items()}
    assert ours == ref


def test_legacy_transformer2dmodel_config_loads(tmp_path):
    """facebook/DiT-XL-2-* save `_class_name: Transformer2DModel` with the Transformer2DModel keys; diffusers remaps."""
    folder = tmp_path / "legacy"
    shutil.copytree(FOLDERS["pipe"], folder)
    d = json.loads((folder / "config.json").read_text())
    d.update(_class_name="Transformer2DModel", cross_attention_dim=None, num_vector_embeds=None,
             only_cross_attention=False, use_linear_projection=False, double_self_attention=False)
    (folder / "config.json").write_text(json.dumps(d))
    net = msdiff.load(folder)
    assert isinstance(net, DiTTransformer2DModel)
    assert_parity(net(*_inputs("pipe", "out")), IO["pipe_out"].astype(np.float64), "legacy DiT")


@pytest.mark.parametrize("change, match", [
    (dict(norm_type="ada_norm_single"), "norm_type"),
    (dict(cross_attention_dim=16), "cross_attention_dim"),
    (dict(num_embeds_ada_norm=None), "num_embeds_ada_norm"),
    (dict(activation_fn="relu"), "activation_fn"),
    (dict(mystery_key=1), "mystery_key"),
])
def test_unsupported_config_is_named(change, match):
    d = dict(json.loads((FOLDERS["pipe"] / "config.json").read_text()), **change)
    with pytest.raises(ValueError, match=match):
        config_from_diffusers(d)


def test_plain_transformer2dmodel_is_refused(tmp_path):
    with pytest.raises(ValueError, match="as DiTTransformer2DModel only with norm_type .ada_norm_zero."):
        config_from_diffusers({"_class_name": "Transformer2DModel", "in_channels": 4})


@pytest.mark.parametrize("shape, match", [((2, 3, 8, 8), "expected latents"), ((2, 4, 7, 8), "multiples"),
                                          ((4, 8, 8), "expected latents")])
def test_wrong_input_shape(shape, match):
    net = _net("small")
    with pytest.raises(ValueError, match=match):
        net(Tensor(np.zeros(shape, np.float32)), 1, Tensor(np.zeros((2,), np.int32)))


@pytest.mark.parametrize("name,mode", mode_cases(sorted(CASES)))
def test_pipeline_matches_diffusers(name, mode):
    case, arrays = CASES[name], np.load(FIXTURES / f"{name}.npz")
    images = dit(_pipeline(), case["class_labels"], guidance_scale=case["guidance_scale"],
                 num_inference_steps=case["num_inference_steps"], noise=[arrays["latents"]],
                 sampler=case["scheduler"], mode=mode, output_type="np")
    assert images.shape == arrays["expected"].shape
    assert np.abs(images - arrays["expected"]).max() <= 1e-4


def test_guidance_changes_the_image_and_latents_equal_noise():
    case, arrays = CASES["ddim_cfg"], np.load(FIXTURES / "ddim_cfg.npz")
    kw = dict(num_inference_steps=3, sampler=case["scheduler"], output_type="np")
    guided = dit(_pipeline(), case["class_labels"], guidance_scale=4.0, latents=Tensor(arrays["latents"]), **kw)
    assert np.abs(guided - arrays["expected"]).max() <= 1e-4
    plain = dit(_pipeline(), case["class_labels"], guidance_scale=1.0, latents=Tensor(arrays["latents"]), **kw)
    assert np.abs(plain - guided).max() > 1e-2


def test_pipeline_errors():
    c = _pipeline()
    with pytest.raises(ValueError, match=r"class_labels must lie in \[0, 1000\)"):
        dit(c, [3, 1000], num_inference_steps=1, seed=0)
    with pytest.raises(ValueError, match=r"class_labels must lie"):
        dit(c, [-1], num_inference_steps=1, seed=0)
    with pytest.raises(ValueError, match="id2label"):
        dit(c, ["golden retriever"], num_inference_steps=1, seed=0)
    with pytest.raises(ValueError, match="latents have shape"):
        dit(c, [1], latents=Tensor(np.zeros((1, 4, 6, 6), np.float32)), num_inference_steps=1)
    with pytest.raises(ValueError, match="mode"):
        dit(c, [1], mode="eager", num_inference_steps=1)
    with pytest.raises(LoadError):
        msdiff.load(FIXTURES)  # no config.json there


def test_label_names_and_pil_output():
    c = _pipeline()
    named = type(c)(**{**c.__dict__, "options": {"id2label": {"7": "tench, Tinca tinca", "1": "goldfish"}}})
    a = dit(named, ["Tinca tinca", "goldfish"], guidance_scale=1.0, num_inference_steps=2, seed=3, output_type="np")
    b = dit(c, [7, 1], guidance_scale=1.0, num_inference_steps=2, seed=3, output_type="np")
    np.testing.assert_array_equal(a, b)
    c_ = dit(c, Tensor(np.array([7, 1], np.int32)), guidance_scale=1.0, num_inference_steps=2, seed=3, output_type="np")
    np.testing.assert_array_equal(c_, b)
    images = dit(c, 7, guidance_scale=1.0, num_inference_steps=1, seed=0)
    assert len(images) == 1 and images[0].size == (16, 16)
