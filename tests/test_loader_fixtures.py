"""msdiff.io against the files diffusers 0.35.2 / transformers 4.57.1 really write (tests/fixtures/loader)."""
import importlib
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, nn
from safetensors import safe_open

import msdiff
from msdiff.io import Components, find_weight_files, load_weights, registry

LOADER = Path(__file__).parent / "fixtures" / "loader"
FIXTURES = Path(__file__).parent / "fixtures"


def read_all(files) -> dict:
    out = {}
    for path in files:
        with safe_open(str(path), framework="np") as f:
            out.update({k: f.get_tensor(k) for k in f.keys()})
    return out


class Bag(nn.Cell):
    """A net whose parameters are exactly the given {dotted name: shape}, nested like the state dict."""

    def __init__(self, shapes: dict, dtype=ms.float32):
        super().__init__()
        for name, shape in shapes.items():
            *path, leaf = name.split(".")
            cell = self
            for part in path:
                if part not in cell._cells:
                    cell.insert_child_to_cell(part, nn.Cell())
                cell = cell._cells[part]
            cell.insert_param_to_cell(leaf, Parameter(np.zeros(shape, {ms.float32: np.float32, ms.float16: np.float16}[dtype]), name=leaf))

    @staticmethod
    def config_from_diffusers(d: dict) -> dict:
        """The shapes of the plain checkpoint next to the config."""
        folder = Path(d["_folder"])
        return {k: v.shape for k, v in read_all(find_weight_files(folder)[1]).items()}

    @staticmethod
    def map_weights(key: str) -> str:
        return key


def bag_for(folder: Path, dtype=ms.float32) -> Bag:
    return Bag({k: v.shape for k, v in read_all(find_weight_files(folder)[1]).items()}, dtype)


def values(net) -> dict:
    return {name: p.asnumpy() for name, p in net.parameters_and_names()}


@pytest.mark.parametrize("folder, variant, source, n_files", [
    ("ddpm/unet", None, "diffusion_pytorch_model.safetensors", 1),
    ("ddpm/unet", "fp16", "diffusion_pytorch_model.fp16.safetensors", 1),
    ("unet_2d_sharded", None, "diffusion_pytorch_model.safetensors.index.json", 4),
    ("unet_2d_sharded", "fp16", "diffusion_pytorch_model.safetensors.index.fp16.json", 2),
    ("clip_text", None, "model.safetensors", 1),
    ("clip_text", "fp16", "model.fp16.safetensors", 1),
    ("clip_text_sharded", None, "model.safetensors.index.json", 4),
    ("clip_text_sharded", "fp16", "model.safetensors.index.fp16.json", 2),
])
def test_finds_the_files_the_libraries_write(folder, variant, source, n_files):
    found, files = find_weight_files(LOADER / folder, variant)
    assert found.name == source and len(files) == n_files


@pytest.mark.parametrize("plain, other", [("ddpm/unet", "unet_2d_sharded"), ("clip_text", "clip_text"),
                                          ("clip_text_sharded", "clip_text_sharded")])
def test_load_weights_reads_plain_sharded_and_fp16_variants(plain, other):
    want = read_all(find_weight_files(LOADER / plain)[1])
    assert want["text_model.final_layer_norm.weight" if "clip" in plain else "conv_in.weight"] is not None
    net = load_weights(bag_for(LOADER / plain), LOADER / other)
    for key, value in values(net).items():
        np.testing.assert_array_equal(value, want[key])
    half = load_weights(bag_for(LOADER / plain, ms.float16), LOADER / other, variant="fp16")
    for key, value in values(half).items():
        assert value.dtype == np.float16
        np.testing.assert_array_equal(value, want[key].astype(np.float16))


def test_load_pipeline_on_a_diffusers_ddpm_pipeline(monkeypatch):
    monkeypatch.setitem(registry.NETS, "UNet2DModel", Bag)
    real_read = msdiff.io.loader.read_config

    def read_with_folder(folder, name="config.json"):
        config = real_read(folder, name)
        return dict(config, _folder=str(folder)) if name == "config.json" else config

    monkeypatch.setattr(msdiff.io.loader, "read_config", read_with_folder)
    parts = msdiff.load_pipeline(LOADER / "ddpm")
    assert parts.pipeline_class == "DDPMPipeline" and parts.name_or_path == str(LOADER / "ddpm")
    assert parts.scheduler["_class_name"] == "DDPMScheduler" and parts.scheduler["num_train_timesteps"] == 50
    assert parts.vae is None and parts.text_encoder is None and parts.tokenizer is None and parts.extra == {}
    want = read_all([LOADER / "ddpm" / "unet" / "diffusion_pytorch_model.safetensors"])
    got = values(parts.unet)
    assert sorted(got) == sorted(want)
    np.testing.assert_array_equal(got["conv_in.weight"], want["conv_in.weight"])
    fp16 = msdiff.load_pipeline(LOADER / "ddpm", dtype="float16", variant="fp16")
    assert fp16.unet.conv_in.weight.dtype == ms.float16


def _registered_fixture_folders() -> list:
    """Fixture folders (any area) whose config.json names a class in msdiff's registry and that hold weights (the
    video area stores configs only: its tests draw the weights)."""
    import json

    found = []
    for config in sorted(FIXTURES.rglob("config.json")):
        d = json.loads(config.read_text())
        name = d.get("_class_name") or (d.get("architectures") or [None])[0]
        if name in registry.NETS and isinstance(registry.NETS[name], str) and \
                any(config.parent.glob("*.safetensors")):
            found.append(config.parent)
    return found


@pytest.mark.parametrize("folder", _registered_fixture_folders(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_registered_fixture_loads_exactly(folder):
    """Round trip for each fixture whose net exists: msdiff.load equals the file, tensor by tensor."""
    import json

    d = json.loads((folder / "config.json").read_text())
    target = registry.NETS[d.get("_class_name") or d["architectures"][0]]
    try:
        importlib.import_module(target.split(":")[0])
    except ModuleNotFoundError as e:
        if e.name != target.split(":")[0]:
            raise
        pytest.skip(f"{target} is not written yet")
    entry = registry.net_entry(d.get("_class_name") or d["architectures"][0])
    net = msdiff.load(folder)
    got = values(net)
    tensors = read_all(find_weight_files(folder)[1])
    mapped = {entry.map_weights(k): v for k, v in tensors.items()}
    mapped.pop(None, None)
    assert sorted(got) == sorted(mapped)
    for name, value in got.items():
        np.testing.assert_array_equal(value, mapped[name].astype(value.dtype), err_msg=name)


def _pipeline_fixture_indexes() -> list:
    """Committed pipeline folders that hold their weights (video_pipelines stores seeded key lists, keys.json, and
    its tests rebuild the weights; tests/test_video_pipelines.py loads those folders); a folder whose UNet weights are
    packed beside it (<name>_unet.npz, tools/support/_packed.py) is written out first."""
    return [p for p in sorted(FIXTURES.rglob("model_index.json")) if not any(p.parent.rglob("keys.json"))]


@pytest.mark.parametrize("index", _pipeline_fixture_indexes(), ids=lambda p: str(p.parent.relative_to(FIXTURES)))
def test_every_pipeline_fixture_loads(index):
    """load_pipeline on each committed diffusers pipeline folder: every listed component is loaded."""
    import json

    listed = {k: v for k, v in json.loads(index.read_text()).items()
              if not k.startswith("_") and isinstance(v, list) and v[1] is not None and k != "safety_checker"}
    folder = index.parent
    if (folder.parent / f"{folder.name}_unet.npz").exists():  # UNet weights packed beside the folder
        from tools.support._packed import pipeline_folder

        folder = pipeline_folder(folder.parent, folder.name)
    parts = msdiff.load_pipeline(folder)
    assert parts.pipeline_class == json.loads(index.read_text())["_class_name"]
    for name, (_, class_name) in listed.items():
        value = getattr(parts, name) if name in Components.__dataclass_fields__ else parts.extra[name]
        assert value is not None, name
        if class_name in registry.NETS:
            assert getattr(type(value), "diffusers_class", type(value).__name__) == class_name
        if name.startswith("scheduler"):
            assert value["_class_name"] == class_name
