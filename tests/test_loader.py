"""msdiff.io: strict safetensors loading, key mapping, variants, shards, hub cache (tiny nets, no torch)."""
import json
from dataclasses import dataclass

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn
from safetensors.numpy import save_file

import msdiff
from msdiff.blocks.layers import GroupNorm, Linear
from msdiff.io import (CheckpointNotFoundError, LoadError, add_variant, find_weight_files, load_weights,
                       register_net)
from msdiff.io import registry


@dataclass(frozen=True)
class TinyConfig:
    width: int = 4
    out: int = 3


def config_from_diffusers(d: dict) -> TinyConfig:
    """Tiny config reader: `norm_type` changes the architecture and is not implemented."""
    if d.get("norm_type", "group") != "group":
        raise ValueError(f"norm_type={d['norm_type']!r} is not supported")
    return TinyConfig(width=d.get("width", 4), out=d.get("out", 3))


def map_weights(key: str):
    """Checkpoint names differ from ours only in 'block.' -> 'body.'; position ids are not weights."""
    if key.endswith("position_ids"):
        return None
    return key.replace("block.", "body.", 1)


class TinyNet(nn.Cell):
    def __init__(self, config: TinyConfig, dtype=ms.float32):
        super().__init__()
        self.body = nn.CellList([Linear(2, config.width, dtype=dtype), GroupNorm(2, config.width, dtype=dtype)])
        self.head = Linear(config.width, config.out, bias=False, dtype=dtype)

    def construct(self, x):
        return self.head(self.body[1](self.body[0](x)[..., None])[..., 0])


def tiny_state(width=4, out=3, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {"block.0.weight": rng.standard_normal((width, 2)).astype(np.float32),
            "block.0.bias": rng.standard_normal(width).astype(np.float32),
            "block.1.weight": rng.standard_normal(width).astype(np.float32),
            "block.1.bias": rng.standard_normal(width).astype(np.float32),
            "head.weight": rng.standard_normal((out, width)).astype(np.float32)}


@pytest.fixture(autouse=True)
def _tiny_registered():
    register_net("TinyNet", TinyNet)
    yield
    registry.NETS.pop("TinyNet", None)


def write_folder(folder, state=None, config=None, name="diffusion_pytorch_model.safetensors"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or {"_class_name": "TinyNet", "width": 4, "out": 3}))
    save_file(tiny_state() if state is None else state, str(folder / name))
    return folder


def params(net) -> dict:
    return {name: p.asnumpy() for name, p in net.parameters_and_names()}


def test_map_weights_is_a_pure_renaming():
    assert map_weights("block.0.weight") == "body.0.weight"
    assert map_weights("head.weight") == "head.weight"
    assert map_weights("text_model.embeddings.position_ids") is None


def test_load_fills_every_parameter_exactly(tmp_path):
    folder = write_folder(tmp_path / "m")
    net = msdiff.load(folder)
    assert isinstance(net, TinyNet)
    got, want = params(net), tiny_state()
    assert sorted(got) == sorted(map_weights(k) for k in want)
    for key, value in want.items():
        np.testing.assert_array_equal(got[map_weights(key)], value)
    assert not net.training


def test_dropped_keys_are_ignored(tmp_path):
    state = dict(tiny_state(), **{"text_model.embeddings.position_ids": np.arange(5, dtype=np.int64)})
    msdiff.load(write_folder(tmp_path / "m", state))


def test_missing_key_is_an_error_naming_key_count_and_file(tmp_path):
    state = tiny_state()
    del state["block.1.bias"], state["head.weight"]
    folder = write_folder(tmp_path / "m", state)
    with pytest.raises(LoadError) as err:
        msdiff.load(folder)
    msg = str(err.value)
    assert "2 missing" in msg and "body.1.bias" in msg and "head.weight" in msg
    assert "diffusion_pytorch_model.safetensors" in msg and "TinyNet" in msg


def test_extra_key_is_an_error(tmp_path):
    state = dict(tiny_state(), **{"block.9.weight": np.zeros(3, np.float32)})
    with pytest.raises(LoadError, match=r"1 unexpected.*block\.9\.weight \(-> body\.9\.weight\)"):
        msdiff.load(write_folder(tmp_path / "m", state))


def test_wrong_shape_is_an_error(tmp_path):
    state = dict(tiny_state(), **{"head.weight": np.zeros((4, 3), np.float32)})
    with pytest.raises(LoadError, match=r"1 tensors with the wrong shape.*head\.weight: checkpoint \(4, 3\) vs net \(3, 4\)"):
        msdiff.load(write_folder(tmp_path / "m", state))


def test_error_lists_only_the_first_few_keys_and_the_count(tmp_path):
    state = dict(tiny_state(), **{f"extra.{i}": np.zeros(1, np.float32) for i in range(12)})
    with pytest.raises(LoadError) as err:
        msdiff.load(write_folder(tmp_path / "m", state))
    msg = str(err.value)
    assert "12 unexpected" in msg and "(7 more)" in msg
    assert msg.count("extra.") == 5


def test_wrong_dtype_kind_is_an_error(tmp_path):
    state = dict(tiny_state(), **{"head.weight": np.zeros((3, 4), np.int32)})
    with pytest.raises(LoadError, match="wrong dtype kind"):
        msdiff.load(write_folder(tmp_path / "m", state))


def test_unknown_class_name_lists_supported_classes(tmp_path):
    folder = write_folder(tmp_path / "m", config={"_class_name": "UNet4DHyperModel"})
    with pytest.raises(LoadError) as err:
        msdiff.load(folder)
    msg = str(err.value)
    assert "UNet4DHyperModel" in msg and "UNet2DConditionModel" in msg and "TinyNet" in msg
    assert "config.json" in msg


def test_transformers_architectures_name_the_class(tmp_path):
    folder = write_folder(tmp_path / "m", config={"architectures": ["TinyNet"], "width": 4},
                          name="model.safetensors")
    assert isinstance(msdiff.load(folder), TinyNet)


def test_config_without_a_class_name(tmp_path):
    with pytest.raises(LoadError, match="names no model class"):
        msdiff.load(write_folder(tmp_path / "m", config={"width": 4}))


def test_unsupported_architecture_key_is_an_error_naming_it(tmp_path):
    folder = write_folder(tmp_path / "m", config={"_class_name": "TinyNet", "norm_type": "ada"})
    with pytest.raises(LoadError, match="norm_type"):
        msdiff.load(folder)


def test_missing_config_names_the_folder(tmp_path):
    folder = write_folder(tmp_path / "m")
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointNotFoundError, match=rf"no config.json in {folder}"):
        msdiff.load(folder)


def test_pipeline_root_given_to_load_points_to_load_pipeline(tmp_path):
    write_folder(tmp_path / "pipe" / "unet")
    (tmp_path / "pipe" / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "TinyNet"]}))
    with pytest.raises(CheckpointNotFoundError, match="pipeline folder: use msdiff.load_pipeline.*one of unet"):
        msdiff.load(tmp_path / "pipe")


def test_missing_folder_and_subfolder(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        msdiff.load(tmp_path / "nope")
    write_folder(tmp_path / "pipe" / "unet")
    assert isinstance(msdiff.load(tmp_path / "pipe", "unet"), TinyNet)
    with pytest.raises(CheckpointNotFoundError, match="subfolder 'vae'"):
        msdiff.load(tmp_path / "pipe", "vae")


@pytest.mark.parametrize("cut", [4, 40, -8])
def test_truncated_safetensors_names_the_file(tmp_path, cut):
    folder = write_folder(tmp_path / "m")
    path = folder / "diffusion_pytorch_model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(LoadError, match=rf"cannot read safetensors file {path}.*truncated or corrupt"):
        msdiff.load(folder)


@pytest.mark.parametrize("name", ["diffusion_pytorch_model.bin", "model.ckpt", "model.pt", "weights.pth"])
def test_pickle_checkpoint_is_refused(tmp_path, name):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "TinyNet"}))
    (folder / name).write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(LoadError) as err:
        msdiff.load(folder)
    msg = str(err.value)
    assert name in msg and "arbitrary code" in msg and "safe_serialization=True" in msg


def test_pickle_next_to_safetensors_is_ignored(tmp_path):
    folder = write_folder(tmp_path / "m")
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"not read")
    assert isinstance(msdiff.load(folder), TinyNet)


def test_pickle_files_given_directly_are_refused(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"x")
    with pytest.raises(LoadError, match="arbitrary code"):
        load_weights(TinyNet(TinyConfig()), [path], map_weights)


def write_shards(folder, state, variant=None, base="diffusion_pytorch_model"):
    """Two shards and an index named as diffusers/transformers name them."""
    keys = sorted(state)
    shards = {}
    for i, part in enumerate((keys[:2], keys[2:])):
        name = add_variant(f"{base}-{i + 1:05d}-of-00002.safetensors", variant)
        save_file({k: state[k] for k in part}, str(folder / name))
        shards.update({k: name for k in part})
    index = {"metadata": {"total_size": 0}, "weight_map": shards}
    (folder / add_variant(f"{base}.safetensors.index.json", variant)).write_text(json.dumps(index))


def test_sharded_checkpoint(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "TinyNet"}))
    write_shards(folder, tiny_state())
    source, files = find_weight_files(folder)
    assert source.name == "diffusion_pytorch_model.safetensors.index.json" and len(files) == 2
    got = params(msdiff.load(folder))
    for key, value in tiny_state().items():
        np.testing.assert_array_equal(got[map_weights(key)], value)


def test_sharded_checkpoint_with_a_missing_shard(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "TinyNet"}))
    write_shards(folder, tiny_state())
    (folder / "diffusion_pytorch_model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointNotFoundError, match="00002-of-00002"):
        msdiff.load(folder)


def test_sharded_key_errors_name_the_shard(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "TinyNet"}))
    write_shards(folder, dict(tiny_state(), **{"zz.extra": np.zeros(2, np.float32)}))
    with pytest.raises(LoadError, match=r"zz\.extra \[diffusion_pytorch_model-00002-of-00002"):
        msdiff.load(folder)


def test_fp16_variant_is_chosen_only_when_asked(tmp_path):
    folder = write_folder(tmp_path / "m")
    half = {k: (v + 1).astype(np.float16) for k, v in tiny_state().items()}
    save_file(half, str(folder / "diffusion_pytorch_model.fp16.safetensors"))
    full = params(msdiff.load(folder))
    np.testing.assert_array_equal(full["head.weight"], tiny_state()["head.weight"])
    net = msdiff.load(folder, variant="fp16")
    assert net.head.weight.dtype == ms.float32
    np.testing.assert_array_equal(params(net)["head.weight"], half["head.weight"].astype(np.float32))
    net = msdiff.load(folder, variant="fp16", dtype="float16")
    assert net.head.weight.dtype == ms.float16
    np.testing.assert_array_equal(params(net)["head.weight"], half["head.weight"])


def test_sharded_variant(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "TinyNet"}))
    write_shards(folder, tiny_state(), variant="fp16")
    source, files = find_weight_files(folder, "fp16")
    assert source.name == "diffusion_pytorch_model.safetensors.index.fp16.json"
    assert [f.name for f in files] == ["diffusion_pytorch_model-00001-of-00002.fp16.safetensors",
                                      "diffusion_pytorch_model-00002-of-00002.fp16.safetensors"]
    msdiff.load(folder, variant="fp16")


def test_missing_variant_lists_what_is_there(tmp_path):
    folder = write_folder(tmp_path / "m")
    with pytest.raises(CheckpointNotFoundError, match=r"variant 'fp16'.*present: diffusion_pytorch_model\.safetensors"):
        msdiff.load(folder, variant="fp16")


def test_dtype_cast_at_load(tmp_path):
    folder = write_folder(tmp_path / "m")
    net = msdiff.load(folder, dtype="float16")
    assert {p.dtype for p in net.get_parameters()} == {ms.float16}
    np.testing.assert_array_equal(params(net)["body.0.weight"], tiny_state()["block.0.weight"].astype(np.float16))
    out = net(ms.Tensor(np.ones((1, 2), np.float16)))
    assert out.dtype == ms.float16 and out.shape == (1, 3)


def test_bf16_checkpoint_into_fp32(tmp_path):
    import struct
    state = tiny_state()
    header, blobs, offset = {}, [], 0
    for key, value in state.items():
        raw = (value.view(np.uint32) >> 16).astype(np.uint16).tobytes()
        header[key] = {"dtype": "BF16", "shape": list(value.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    folder = write_folder(tmp_path / "m")
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))
    got = params(msdiff.load(folder))
    want = (state["head.weight"].view(np.uint32) & 0xFFFF0000).view(np.float32)
    np.testing.assert_array_equal(got["head.weight"], want)


def test_bad_dtypes(tmp_path):
    folder = write_folder(tmp_path / "m")
    with pytest.raises(ValueError, match="float32, float16, bfloat16"):
        msdiff.load(folder, dtype="float64")
    if ms.get_context("device_target") == "CPU":
        with pytest.raises(ValueError, match="CPU kernels"):
            msdiff.load(folder, dtype="bfloat16")


def test_load_weights_on_files_and_identity_map(tmp_path):
    net = TinyNet(TinyConfig())
    state = {map_weights(k): v for k, v in tiny_state(seed=3).items()}
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    load_weights(net, path)
    for key, value in state.items():
        np.testing.assert_array_equal(params(net)[key], value)


def make_hub_cache(root, repo_id, files: dict, revision="0123456789abcdef0123456789abcdef01234567"):
    """huggingface_hub's cache layout: models--org--name/{refs/main, blobs/, snapshots/<hash>/ -> blobs}."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    for i, (rel, writer) in enumerate(files.items()):
        blob = repo / "blobs" / f"{i:040x}"
        writer(blob)
        (snapshot / rel).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / rel).symlink_to(blob)
    return snapshot


def test_repo_id_resolves_through_the_hub_cache_offline(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    config = json.dumps({"_class_name": "TinyNet"})
    make_hub_cache(cache, "org/tiny", {
        "unet/config.json": lambda p: p.write_text(config),
        "unet/diffusion_pytorch_model.safetensors": lambda p: save_file(tiny_state(), str(p))})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    net = msdiff.load("org/tiny", subfolder="unet")
    np.testing.assert_array_equal(params(net)["head.weight"], tiny_state()["head.weight"])


def test_hf_home_is_honoured(tmp_path, monkeypatch):
    make_hub_cache(tmp_path / "home" / "hub", "org/tiny", {
        "config.json": lambda p: p.write_text(json.dumps({"_class_name": "TinyNet"})),
        "diffusion_pytorch_model.safetensors": lambda p: save_file(tiny_state(), str(p))})
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert isinstance(msdiff.load("org/tiny"), TinyNet)


def test_uncached_repo_id_says_how_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointNotFoundError) as err:
        msdiff.load("org/not-there")
    msg = str(err.value)
    assert "org/not-there" in msg and "hf download org/not-there" in msg and "HF_HUB_OFFLINE" in msg


def test_load_builds_the_net_without_initialising_any_parameter(tmp_path, monkeypatch):
    """msdiff.load creates parameters without data (no_init_parameters) and fills them from the file."""
    def refuse(self, *args, **kwargs):
        raise AssertionError("a parameter initialiser ran")

    monkeypatch.setattr(ms.Tensor, "init_data", refuse)
    with pytest.raises(AssertionError, match="initialiser ran"):
        TinyNet(TinyConfig())
    net = msdiff.load(write_folder(tmp_path / "m"), dtype="float16")
    for key, value in tiny_state().items():
        np.testing.assert_array_equal(params(net)[map_weights(key)], value.astype(np.float16))


def test_loaded_parameters_are_plain_and_run_in_pynative_and_jit(tmp_path):
    import copy

    net = msdiff.load(write_folder(tmp_path / "m"))
    for param in net.get_parameters():
        assert not param.has_init and param.init_mode is None
    want = params(net)
    net.init_parameters_data()
    x = ms.Tensor(np.random.default_rng(1).standard_normal((2, 2)).astype(np.float32))
    eager = net(x).asnumpy()

    def forward(x):
        return net(x)

    np.testing.assert_allclose(ms.jit(forward)(x).asnumpy(), eager, rtol=1e-6, atol=1e-6)
    for name, value in params(net).items():
        np.testing.assert_array_equal(value, want[name])
    clone = copy.deepcopy(net.head.weight)
    np.testing.assert_array_equal(clone.asnumpy(), want["head.weight"])


def test_missing_key_leaves_no_uninitialised_net_behind(tmp_path):
    """A lazily built net with a key absent from the file: an error, before any parameter is assigned."""
    from mindspore.nn.utils import no_init_parameters

    state = tiny_state()
    del state["head.weight"]
    path = tmp_path / "w.safetensors"
    save_file({map_weights(k): v for k, v in state.items()}, str(path))
    with no_init_parameters():
        net = TinyNet(TinyConfig())
    with pytest.raises(LoadError, match=r"1 missing.*head\.weight"):
        load_weights(net, path)


def test_header_pointing_past_the_end_of_the_file_is_an_error(tmp_path):
    import struct

    folder = write_folder(tmp_path / "m")
    path = folder / "diffusion_pytorch_model.safetensors"
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + size])
    header["head.weight"]["shape"] = [3, 4]
    end = max(e["data_offsets"][1] for k, e in header.items() if k != "__metadata__")
    header["head.weight"]["data_offsets"] = [end, end + 48]
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + data[8 + size:])
    with pytest.raises(LoadError, match=r"cannot read safetensors file .*truncated or corrupt"):
        msdiff.load(folder)


def test_large_parameter_buffers_in_their_own_mappings_stay_valid(tmp_path, monkeypatch):
    """Buffers past weights._OWN_MAPPING_BYTES come from an anonymous mmap; the parameters keep them alive."""
    import gc

    from msdiff.io import weights

    monkeypatch.setattr(weights, "_OWN_MAPPING_BYTES", 0)
    for dtype in ("float32", "float16"):
        net = msdiff.load(write_folder(tmp_path / dtype), dtype=dtype)
        gc.collect()
        filler = [np.full(1 << 16, 7.0) for _ in range(64)]
        for key, value in tiny_state().items():
            np.testing.assert_array_equal(params(net)[map_weights(key)], value.astype(dtype))
        x = ms.Tensor(np.ones((1, 2), dtype))

        def forward(x):
            return net(x)

        np.testing.assert_array_equal(ms.jit(forward)(x).asnumpy(), net(x).asnumpy())
        del filler
