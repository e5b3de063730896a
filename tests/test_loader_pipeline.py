"""msdiff.load_pipeline over model_index.json, and the class registry (tiny nets, no torch)."""
import json
from dataclasses import FrozenInstanceError

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn
from safetensors.numpy import save_file

import msdiff
from msdiff.blocks.layers import Linear
from msdiff.io import Components, LoadError, register_net, register_tokenizer, registry


def config_from_diffusers(d: dict) -> int:
    """Width of the tiny net."""
    return d.get("width", 2)


def map_weights(key: str) -> str:
    """Identity."""
    return key


class Pair(nn.Cell):
    def __init__(self, width: int, dtype=ms.float32):
        super().__init__()
        self.proj = Linear(width, width, dtype=dtype)


class Doubled(Pair):
    """Shares the module with Pair but reads checkpoints with a 'model.' prefix."""

    @staticmethod
    def map_weights(key: str) -> str:
        return key.removeprefix("model.")


class Tok:
    def __init__(self, folder):
        self.folder = folder

    @classmethod
    def from_pretrained(cls, folder):
        return cls(folder)


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    monkeypatch.setitem(registry.NETS, "PairNet", Pair)
    monkeypatch.setitem(registry.NETS, "DoubledNet", Doubled)
    monkeypatch.setitem(registry.TOKENIZERS, "TokFast", Tok)


def state(width=2, prefix=""):
    rng = np.random.default_rng(width)
    return {prefix + "proj.weight": rng.standard_normal((width, width)).astype(np.float32),
            prefix + "proj.bias": rng.standard_normal(width).astype(np.float32)}


def component(root, name, class_name, width=2, prefix="", weights="diffusion_pytorch_model.safetensors"):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": class_name, "width": width}))
    save_file(state(width, prefix), str(folder / weights))


def pipeline(root, index: dict):
    root.mkdir(parents=True, exist_ok=True)
    (root / "model_index.json").write_text(json.dumps(index))
    return root


def test_components_of_a_pipeline_folder(tmp_path):
    component(tmp_path, "unet", "PairNet", 3)
    component(tmp_path, "text_encoder", "DoubledNet", 2, prefix="model.", weights="model.safetensors")
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 1000}))
    (tmp_path / "feature_extractor").mkdir()
    (tmp_path / "feature_extractor" / "preprocessor_config.json").write_text(json.dumps({"crop_size": 224}))
    pipeline(tmp_path, {"_class_name": "SomePipeline", "_diffusers_version": "0.35.2",
                        "unet": ["diffusers", "PairNet"], "text_encoder": ["transformers", "DoubledNet"],
                        "tokenizer": ["transformers", "TokFast"], "scheduler": ["diffusers", "EulerDiscreteScheduler"],
                        "vae": [None, None], "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
                        "feature_extractor": ["transformers", "CLIPImageProcessor"],
                        "requires_safety_checker": True})
    parts = msdiff.load_pipeline(str(tmp_path), dtype="float16")
    assert isinstance(parts, Components) and parts.pipeline_class == "SomePipeline"
    assert parts.name_or_path == str(tmp_path)
    assert isinstance(parts.unet, Pair) and parts.unet.proj.weight.shape == (3, 3)
    assert parts.unet.proj.weight.dtype == ms.float16
    assert isinstance(parts.text_encoder, Doubled)
    np.testing.assert_array_equal(parts.text_encoder.proj.bias.asnumpy(), state(2)["proj.bias"].astype(np.float16))
    assert isinstance(parts.tokenizer, Tok) and parts.tokenizer.folder == tmp_path / "tokenizer"
    assert parts.scheduler == {"_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 1000}
    assert parts.vae is None and parts.text_encoder_2 is None and parts.tokenizer_2 is None
    assert parts.extra == {"safety_checker": None, "feature_extractor": {"crop_size": 224}}
    assert parts.options == {"requires_safety_checker": True}
    with pytest.raises(FrozenInstanceError):
        parts.unet = None


def test_unknown_component_class_names_component_and_class(tmp_path):
    component(tmp_path, "transformer", "PairNet")
    pipeline(tmp_path, {"_class_name": "FluxPipeline", "transformer": ["diffusers", "FluxTransformer2DModel"]})
    with pytest.raises(LoadError) as err:
        msdiff.load_pipeline(tmp_path)
    msg = str(err.value)
    assert "'transformer'" in msg and "diffusers.FluxTransformer2DModel" in msg and "model_index.json" in msg
    parts = msdiff.load_pipeline(tmp_path, skip=("transformer",))
    assert parts.extra == {"transformer": None}


def test_unknown_tokenizer_class(tmp_path):
    (tmp_path / "tokenizer").mkdir(parents=True)
    pipeline(tmp_path, {"tokenizer": ["transformers", "LlamaTokenizerFast"]})
    with pytest.raises(LoadError, match=r"'tokenizer' has class transformers\.LlamaTokenizerFast.*CLIPTokenizer"):
        msdiff.load_pipeline(tmp_path)


def test_missing_model_index_and_missing_component(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        msdiff.load_pipeline(tmp_path)
    pipeline(tmp_path, {"unet": ["diffusers", "PairNet"]})
    with pytest.raises(FileNotFoundError, match="subfolder 'unet'"):
        msdiff.load_pipeline(tmp_path)


def test_pipeline_variant_is_strict(tmp_path):
    component(tmp_path, "unet", "PairNet")
    pipeline(tmp_path, {"unet": ["diffusers", "PairNet"]})
    with pytest.raises(FileNotFoundError, match="variant 'fp16'"):
        msdiff.load_pipeline(tmp_path, variant="fp16")


def test_registry_lists_supported_classes_and_resolves_lazily():
    with pytest.raises(ValueError) as err:
        registry.net_entry("NoSuchModel")
    for name in ("UNet2DConditionModel", "AutoencoderKL", "CLIPTextModel", "CLIPTextModelWithProjection",
                 "UNet2DModel"):
        assert name in str(err.value)
        assert registry.NETS[name].startswith("msdiff.nets.")
    with pytest.raises(ValueError, match="module:Class"):
        register_net("X", "msdiff.nets.x.X")
    with pytest.raises(ValueError, match="module:Class"):
        register_tokenizer("X", "msdiff.tokenizer.X")
    assert "X" not in registry.NETS and "X" not in registry.TOKENIZERS
    entry = registry.net_entry("DoubledNet")
    assert entry.map_weights("model.proj.weight") == "proj.weight"
    assert registry.net_entry("PairNet").map_weights("model.proj.weight") == "model.proj.weight"
    assert entry.config_from_diffusers({"width": 5}) == 5


def test_import_msdiff_stays_light():
    import subprocess
    import sys

    code = "import sys, msdiff; assert 'mindspore' not in sys.modules; assert callable(msdiff.load)"
    subprocess.run([sys.executable, "-c", code], check=True)
