"""UNet2DModel against diffusers 0.35.2 on tiny configs (tests/fixtures/unet_2d), PyNative and mindspore.jit."""
import json
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor
from mindspore.nn.utils import no_init_parameters
from test_unet_config import assert_one_to_one, msdiff_shapes

import msdiff
from tools.support.unet_2d import UNCONDITIONAL_CASES, unconditional_case
from msdiff.nets.unet_2d import UNet2DConfig, UNet2DModel, config_from_diffusers, map_weights
from _cases import mode_cases

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "unet_2d"
NAMES = ("class_cond", "uncond", "fourier", "cd", "class_timestep", "class_identity")


def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _inputs(name: str):
    io = np.load(FIXTURES / name / "io.npz")
    labels = None
    if "class_labels" in io:
        y = io["class_labels"]
        labels = Tensor(y.astype(np.int32) if y.dtype.kind == "i" else y)
    return io, Tensor(io["sample"]), Tensor(io["timestep"]), labels


@pytest.mark.parametrize("name,mode", mode_cases(NAMES, graph="jit", graph_name="fourier"))
def test_matches_diffusers_fp32(name, mode):
    net = msdiff.load(FIXTURES / name)
    io, sample, timestep, labels = _inputs(name)

    def f(x, t, y):
        return net(x, t, y)

    fn = ms.jit(f) if mode == "jit" else f
    out = fn(sample, timestep, labels).asnumpy()
    assert _rel_l2(out, io["out"]) <= 1e-5
    assert np.abs(out - io["out"]).max() <= 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_python_scalar_timestep(name):
    net = msdiff.load(FIXTURES / name)
    io, sample, _, labels = _inputs(name)
    out = net(sample, 2.0 if name == "fourier" else 25, labels).asnumpy()
    assert _rel_l2(out, io["out_scalar_t"]) <= 1e-5


def test_class_labels_required_and_refused():
    cond = msdiff.load(FIXTURES / "class_cond")
    _, sample, timestep, labels = _inputs("class_cond")
    with pytest.raises(ValueError, match="class_labels"):
        cond(sample, timestep)
    uncond = msdiff.load(FIXTURES / "uncond")
    _, sample, timestep, _ = _inputs("uncond")
    with pytest.raises(ValueError, match="class_labels"):
        uncond(sample, timestep, labels)


def test_config_refuses_unsupported_architecture():
    with pytest.raises(ValueError, match="resnet_time_scale_shift"):
        config_from_diffusers({"resnet_time_scale_shift": "spatial"})
    with pytest.raises(ValueError, match="class_embed_type"):
        config_from_diffusers({"class_embed_type": "projection"})
    with pytest.raises(ValueError, match="upsample_type"):
        config_from_diffusers({"upsample_type": "fir"})
    with pytest.raises(ValueError, match="KDownBlock2D"):
        config_from_diffusers({"down_block_types": ["KDownBlock2D"] * 4})
    with pytest.raises(ValueError, match="in_channels = out_channels = 3"):
        config_from_diffusers({"down_block_types": ["SkipDownBlock2D"] * 4, "in_channels": 1})
    with pytest.raises(ValueError, match="norm_num_groups=None"):
        config_from_diffusers({"norm_num_groups": None})
    with pytest.raises(ValueError, match="num_train_timesteps"):
        config_from_diffusers({"time_embedding_type": "learned"})
    with pytest.raises(ValueError, match="unknown config key"):
        config_from_diffusers({"bogus": 1})
    assert config_from_diffusers({"_class_name": "UNet2DModel", "dropout": 0.1}) == UNet2DConfig()
    assert map_weights("down_blocks.1.attentions.0.to_q.weight") == "down_blocks.1.attentions.0.to_q.weight"


@pytest.mark.parametrize("name,mode", mode_cases(sorted(UNCONDITIONAL_CASES), graph_name="ddim_eta"))
def test_unconditional_recipe_matches_diffusers_pipelines(name, mode):
    from msdiff.recipes.unconditional import unconditional

    components, kwargs, expected = unconditional_case(FIXTURES, name)
    images = unconditional(components, mode=mode, **kwargs)
    assert images.shape == expected.shape
    assert np.abs(images - expected).max() <= 1e-4


def test_shipped_digit_model_matches_diffusers():
    from msdiff.recipes.unconditional import load_digits_model

    io = np.load(FIXTURES / "digits_io.npz")
    components = load_digits_model()
    assert components.pipeline_class == "DDPMPipeline" and components.scheduler["_class_name"] == "DDPMScheduler"
    out = components.unet(Tensor(io["sample"]), Tensor(io["timestep"]), Tensor(io["class_labels"].astype(np.int32)))
    assert _rel_l2(out.asnumpy(), io["out"]) <= 1e-5


@pytest.mark.parametrize("name", ("cd_imagenet64", "cd_lsun256"))
def test_full_size_consistency_unet_structure(name):
    """The real consistency-model UNets (configs of diffusers' convert_consistency_to_diffusers.py): every
    diffusers parameter has an msdiff parameter of the same name and shape, and nothing is left over."""
    doc = json.loads((FIXTURES / "structure" / f"{name}.json").read_text())
    with no_init_parameters():
        net = UNet2DModel(config_from_diffusers(doc["config"]))
    assert_one_to_one(doc["params"], msdiff_shapes(net), map_weights)


def test_pre_0_14_attention_key_names_load(tmp_path):
    """Old checkpoints (google/ddpm-*) name the attention weights query/key/value/proj_attn; diffusers renames
    them on load, and so does msdiff: the renamed class_cond checkpoint gives the same output."""
    import shutil

    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "old"
    shutil.copytree(FIXTURES / "class_cond", folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    new_to_old = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
    old = {}
    for key, value in load_file(weights).items():
        for new, former in new_to_old.items():
            key = key.replace(new, former)
        old[key] = value
    assert any(".proj_attn." in k for k in old) and not any(".to_q." in k for k in old)
    save_file(old, weights)
    io, sample, timestep, labels = _inputs("class_cond")
    out = msdiff.load(folder)(sample, timestep, labels).asnumpy()
    assert _rel_l2(out, io["out"]) <= 1e-5
    assert map_weights("mid_block.attentions.0.proj_attn.bias") == "mid_block.attentions.0.to_out.0.bias"
    assert map_weights("down_blocks.0.resnets.0.conv1.weight") == "down_blocks.0.resnets.0.conv1.weight"


def test_unconditional_recipe_refuses_float_class_inputs():
    from msdiff.io import Components
    from msdiff.recipes.unconditional import unconditional

    components = Components(unet=msdiff.load(FIXTURES / "class_timestep"),
                            scheduler={"_class_name": "DDPMScheduler", "num_train_timesteps": 10})
    with pytest.raises(ValueError, match="class_embed_type='timestep'"):
        unconditional(components, num_inference_steps=2, class_labels=[1], mode="pynative")
