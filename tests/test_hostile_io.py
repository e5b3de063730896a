"""msdiff.io against hostile and careless folders: no reads outside the model, configs checked when read,
non-finite or out-of-range weights refused at load (tiny nets and configs, no torch)."""
import json
import os
import struct
from dataclasses import dataclass

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn
from safetensors.numpy import save_file

import msdiff
from msdiff.blocks.layers import Linear
from msdiff.io import LoadError, register_net, registry
from msdiff.samplers.config import from_config

REV = "0123456789abcdef0123456789abcdef01234567"


@dataclass(frozen=True)
class WideConfig:
    width: int = 4


def config_from_diffusers(d: dict) -> WideConfig:
    """Tiny config reader (types and ranges checked by the loader from the annotations)."""
    return WideConfig(width=d.get("width", 4))


def map_weights(key: str):
    """Identity."""
    return key


class Wide(nn.Cell):
    def __init__(self, config: WideConfig, dtype=ms.float32):
        super().__init__()
        self.head = Linear(2, config.width, dtype=dtype)

    def construct(self, x):
        return self.head(x)


@pytest.fixture(autouse=True)
def _wide_registered():
    register_net("Wide", Wide)
    yield
    registry.NETS.pop("Wide", None)


def state(seed=0, width=4) -> dict:
    rng = np.random.default_rng(seed)
    return {"head.weight": rng.standard_normal((width, 2)).astype(np.float32),
            "head.bias": rng.standard_normal(width).astype(np.float32)}


def component(folder, tensors=None, config=None, name="diffusion_pytorch_model.safetensors"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or {"_class_name": "Wide"}))
    save_file(state() if tensors is None else tensors, str(folder / name))
    return folder


def message(call) -> str:
    with pytest.raises(LoadError) as err:
        call()
    text = str(err.value)
    assert "\n" not in text, text
    return text


# ---- paths outside the model folder -------------------------------------------------------------------------

def sharded(folder, weight_map):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "Wide"}))
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


@pytest.mark.parametrize("entry", ["../outside.safetensors", "{abs}", "sub/../../outside.safetensors",
                                   "./shard.safetensors", "..\\outside.safetensors", "shard.bin", "", 5, None])
def test_weight_map_entries_must_be_plain_shard_names(tmp_path, entry):
    save_file(state(seed=7), str(tmp_path / "outside.safetensors"))
    model = tmp_path / "model"
    if entry == "{abs}":
        entry = str(tmp_path / "outside.safetensors")
    index = sharded(model, {"head.weight": entry, "head.bias": entry})
    msg = message(lambda: msdiff.load(model))
    assert str(index) in msg and "weight_map entry 'head" in msg and repr(entry) in msg


@pytest.mark.parametrize("weight_map", [[], {}, "shard.safetensors", 3, None])
def test_malformed_weight_map(tmp_path, weight_map):
    index = sharded(tmp_path / "m", weight_map)
    msg = message(lambda: msdiff.load(tmp_path / "m"))
    assert str(index) in msg and "weight_map" in msg


def test_a_sane_shard_index_still_loads(tmp_path):
    model = tmp_path / "m"
    sharded(model, {"head.weight": "a.safetensors", "head.bias": "b.safetensors"})
    save_file({"head.weight": state()["head.weight"]}, str(model / "a.safetensors"))
    save_file({"head.bias": state()["head.bias"]}, str(model / "b.safetensors"))
    np.testing.assert_array_equal(msdiff.load(model).head.bias.asnumpy(), state()["head.bias"])


def pipeline(folder, index: dict):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline", **index}))
    return folder / "model_index.json"


@pytest.mark.parametrize("key", ["../outside", "{abs}", "..", ".", "unet/../../outside", "a\\..\\b"])
def test_model_index_component_names_stay_inside(tmp_path, key):
    component(tmp_path / "outside")
    if key == "{abs}":
        key = str(tmp_path / "outside")
    index = pipeline(tmp_path / "pipe", {key: ["diffusers", "Wide"]})
    msg = message(lambda: msdiff.load_pipeline(tmp_path / "pipe"))
    assert str(index) in msg and f"component {key!r}" in msg


@pytest.mark.parametrize("value", ["diffusers", ["diffusers"], ["diffusers", 5], ["diffusers", ["Wide"]],
                                   ["diffusers", "Wide", "extra"], {"library": "diffusers"}])
def test_malformed_model_index_entries(tmp_path, value):
    index = pipeline(tmp_path / "pipe", {"unet": value})
    msg = message(lambda: msdiff.load_pipeline(tmp_path / "pipe"))
    assert str(index) in msg and "'unet'" in msg and "malformed" in msg


def test_model_index_class_name_must_be_a_string(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": ["DDPMPipeline"]}))
    assert "_class_name" in message(lambda: msdiff.load_pipeline(tmp_path))


def test_pipeline_options_and_null_components_still_load(tmp_path):
    component(tmp_path / "pipe" / "unet")
    pipeline(tmp_path / "pipe", {"unet": ["diffusers", "Wide"], "vae": [None, None], "requires_safety_checker": True,
                                 "some_pair": [1, 2]})
    parts = msdiff.load_pipeline(tmp_path / "pipe")
    assert isinstance(parts.unet, Wide) and parts.vae is None
    assert parts.options == {"requires_safety_checker": True, "some_pair": [1, 2]}


@pytest.mark.parametrize("link", ["config.json", "diffusion_pytorch_model.safetensors", "unet"])
def test_local_symlinks_out_of_the_model_folder_are_refused(tmp_path, link):
    outside = component(tmp_path / "outside")
    pipe = tmp_path / "pipe"
    unet = pipe / "unet"
    pipeline(pipe, {"unet": ["diffusers", "Wide"]})
    if link == "unet":
        unet.symlink_to(outside, target_is_directory=True)
    else:
        component(unet)
        (unet / link).unlink()
        (unet / link).symlink_to(outside / link)
    msg = message(lambda: msdiff.load_pipeline(pipe))
    assert "outside the model folder" in msg and str(pipe.resolve()) in msg


def test_symlinks_inside_the_model_folder_are_fine(tmp_path):
    pipe = tmp_path / "pipe"
    component(pipe / "shared")
    (pipe / "unet").mkdir()
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        (pipe / "unet" / name).symlink_to(pipe / "shared" / name)
    np.testing.assert_array_equal(msdiff.load(pipe, "unet").head.bias.asnumpy(), state()["head.bias"])


def hub_repo(cache, repo_id="org/tiny", ref=REV):
    """huggingface_hub's cache layout: models--org--name/{refs/main, blobs/, snapshots/<rev>/* -> ../../blobs/*}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(ref)
    staging = component(repo / "staging")
    snapshot = repo / "snapshots" / REV
    snapshot.mkdir(parents=True)
    for i, name in enumerate(("config.json", "diffusion_pytorch_model.safetensors")):
        blob = repo / "blobs" / f"{i:040x}"
        blob.parent.mkdir(exist_ok=True)
        (staging / name).rename(blob)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    staging.rmdir()
    return repo, snapshot


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub"


def test_hub_snapshot_links_into_blobs_load(hub):
    _, snapshot = hub_repo(hub)
    assert os.readlink(snapshot / "config.json").startswith("../../blobs/")
    np.testing.assert_array_equal(msdiff.load("org/tiny").head.bias.asnumpy(), state()["head.bias"])
    np.testing.assert_array_equal(msdiff.load(snapshot).head.bias.asnumpy(), state()["head.bias"])


@pytest.mark.parametrize("ref", ["../../../outside", "{abs}", f"{REV}/../../../../outside", "../../elsewhere"])
def test_hub_refs_pointing_outside_the_cache_are_refused(hub, tmp_path, ref):
    component(tmp_path / "outside")
    component(hub / "elsewhere")
    if ref == "{abs}":
        ref = str(tmp_path / "outside")
    repo, _ = hub_repo(hub, ref=ref)
    msg = message(lambda: msdiff.load("org/tiny"))
    assert str(repo / "refs" / "main") in msg and ref in msg


def test_hub_snapshot_link_out_of_the_repo_is_refused(hub, tmp_path):
    outside = component(tmp_path / "outside")
    _, snapshot = hub_repo(hub)
    (snapshot / "diffusion_pytorch_model.safetensors").unlink()
    (snapshot / "diffusion_pytorch_model.safetensors").symlink_to(outside / "diffusion_pytorch_model.safetensors")
    assert "outside the model folder" in message(lambda: msdiff.load("org/tiny"))


@pytest.mark.parametrize("subfolder", ["../outside", "/etc", "a/../../outside"])
def test_subfolder_argument_stays_inside(tmp_path, subfolder):
    component(tmp_path / "outside")
    (tmp_path / "m").mkdir()
    assert repr(subfolder) in message(lambda: msdiff.load(tmp_path / "m", subfolder))


# ---- configs checked when read --------------------------------------------------------------------------------

TINY_UNET = dict(_class_name="UNet2DConditionModel", sample_size=8, in_channels=4, out_channels=4,
                 block_out_channels=[32, 64], layers_per_block=1, norm_num_groups=32, cross_attention_dim=32,
                 attention_head_dim=8, down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                 up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"])
TINY_VAE = dict(_class_name="AutoencoderKL", in_channels=3, out_channels=3, latent_channels=4,
                block_out_channels=[32, 64], layers_per_block=1, norm_num_groups=32,
                down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
TINY_CLIP = dict(architectures=["CLIPTextModel"], hidden_size=32, intermediate_size=37, num_attention_heads=4,
                 num_hidden_layers=2, projection_dim=32, vocab_size=99, max_position_embeddings=77)
TINY_T5 = dict(architectures=["T5EncoderModel"], d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)

BAD_CONFIGS = [
    (TINY_UNET, "in_channels", "4"), (TINY_UNET, "in_channels", 0), (TINY_UNET, "out_channels", -4),
    (TINY_UNET, "in_channels", 4.0), (TINY_UNET, "in_channels", True), (TINY_UNET, "norm_num_groups", 0),
    (TINY_UNET, "attention_head_dim", 0), (TINY_UNET, "attention_head_dim", [8, 0]),
    (TINY_UNET, "norm_eps", float("nan")), (TINY_UNET, "norm_eps", -1e-5), (TINY_UNET, "norm_eps", "1e-5"),
    (TINY_UNET, "block_out_channels", [32, 0]), (TINY_UNET, "block_out_channels", 64),
    (TINY_UNET, "block_out_channels", ["32", "64"]), (TINY_UNET, "layers_per_block", 1.5),
    (TINY_UNET, "center_input_sample", "false"), (TINY_UNET, "down_block_types", "CrossAttnDownBlock2D"),
    (TINY_UNET, "cross_attention_dim", None), (TINY_UNET, "sample_size", float("inf")),
    (TINY_UNET, "transformer_layers_per_block", [[1, 0], 1]), (TINY_UNET, "freq_shift", float("nan")),
    (TINY_VAE, "latent_channels", 0), (TINY_VAE, "scaling_factor", 0), (TINY_VAE, "scaling_factor", "0.18215"),
    (TINY_VAE, "norm_num_groups", -32), (TINY_VAE, "force_upcast", 1),
    (TINY_CLIP, "num_attention_heads", 0), (TINY_CLIP, "hidden_size", "32"), (TINY_CLIP, "layer_norm_eps", 0.0),
    (TINY_CLIP, "eos_token_id", -1), (TINY_CLIP, "hidden_act", 7),
    (TINY_T5, "d_kv", 0), (TINY_T5, "num_heads", "4"), (TINY_T5, "layer_norm_epsilon", float("inf")),
]


@pytest.mark.parametrize("base, key, value", BAD_CONFIGS, ids=[f"{b.get('_class_name') or b['architectures'][0]}-"
                                                              f"{k}={v!r}" for b, k, v in BAD_CONFIGS])
def test_config_values_of_wrong_type_or_range(tmp_path, base, key, value):
    folder = component(tmp_path / "m", config=dict(base, **{key: value}))
    msg = message(lambda: msdiff.load(folder))
    assert str(folder / "config.json") in msg and f"{key}={value!r}" in msg and "must be" in msg


@pytest.mark.parametrize("change, keys", [
    ({"block_out_channels": [32, 64, 64]}, "block_out_channels"),
    ({"up_block_types": ["UpBlock2D"]}, "up_block_types"),
    ({"attention_head_dim": [8, 8, 8]}, "attention_head_dim"),
    ({"layers_per_block": [1]}, "layers_per_block"),
    ({"norm_num_groups": 24}, "norm_num_groups=24"),
    ({"block_out_channels": [32, 48]}, "norm_num_groups=32"),
])
def test_inconsistent_per_block_values(tmp_path, change, keys):
    folder = component(tmp_path / "m", config=dict(TINY_UNET, **change))
    msg = message(lambda: msdiff.load(folder))
    assert str(folder / "config.json") in msg and keys in msg


def test_tiny_configs_themselves_are_valid():
    from msdiff.io.loader import _read_net_config
    for base in (TINY_UNET, TINY_VAE, TINY_CLIP, TINY_T5):
        name = base.get("_class_name") or base["architectures"][0]
        _read_net_config(registry.net_entry(name), base, name, "config.json")


def test_annotated_types_of_a_registered_net_are_checked(tmp_path):
    for i, width in enumerate(("4", 2.5, None, [4], True)):
        folder = component(tmp_path / f"m{i}", config={"_class_name": "Wide", "width": width})
        assert f"width={width!r}" in message(lambda: msdiff.load(folder))
    folder = component(tmp_path / "zero", config={"_class_name": "Wide", "width": 0})  # no range rule for 'width'
    msg = message(lambda: msdiff.load(folder))
    assert str(folder / "config.json") in msg and "does not build a Wide" in msg


BAD_SCHEDULERS = [("num_train_timesteps", "1000"), ("num_train_timesteps", 0), ("num_train_timesteps", 10.5),
                  ("beta_start", float("nan")), ("beta_end", -0.02), ("beta_end", "0.02"),
                  ("trained_betas", [0.1, "x"]), ("trained_betas", [0.1, 0.0]), ("clip_sample", "true"),
                  ("steps_offset", -1), ("timestep_spacing", 3), ("clip_sample_range", 0.0),
                  ("set_alpha_to_one", None)]


@pytest.mark.parametrize("key, value", BAD_SCHEDULERS)
def test_scheduler_config_values_are_checked_when_read(tmp_path, key, value):
    sub = tmp_path / "pipe" / "scheduler"
    sub.mkdir(parents=True)
    (sub / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDIMScheduler", key: value}))
    pipeline(tmp_path / "pipe", {"scheduler": ["diffusers", "DDIMScheduler"]})
    msg = message(lambda: msdiff.load_pipeline(tmp_path / "pipe"))
    assert str(sub / "scheduler_config.json") in msg and f"{key}={value!r}" in msg and "must be" in msg
    with pytest.raises(ValueError, match="DDIMScheduler: config .* must be"):
        from_config({"_class_name": "DDIMScheduler", key: value})


@pytest.mark.parametrize("name, args", [("DDIMScheduler", {"eta": float("nan")}), ("DDIMScheduler", {"eta": -1.0}),
                                        ("DDIMScheduler", {"eta": "0"})])
def test_sampler_arguments_are_checked(name, args):
    with pytest.raises(ValueError, match="sampler argument .* must be"):
        from_config({"_class_name": name}, **args)


# ---- non-finite and out-of-range weights ----------------------------------------------------------------------

def raw_safetensors(path, key, st_dtype, shape, data: bytes):
    """A one-tensor safetensors file written by hand (for dtypes numpy cannot save, e.g. BF16)."""
    header = json.dumps({key: {"dtype": st_dtype, "shape": list(shape), "data_offsets": [0, len(data)]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("file_dtype", [np.float32, np.float16])
def test_non_finite_weights_are_refused_in_any_dtype(tmp_path, dtype, bad, file_dtype):
    tensors = {k: v.astype(file_dtype) for k, v in state().items()}
    tensors["head.weight"][1, 0] = bad
    folder = component(tmp_path / "m", tensors)
    msg = message(lambda: msdiff.load(folder, dtype=dtype))
    assert "diffusion_pytorch_model.safetensors" in msg and "'head.weight'" in msg and "NaN or infinite" in msg


def test_non_finite_bf16_weights_are_refused(tmp_path):
    folder = component(tmp_path / "m", {"head.weight": state()["head.weight"]})
    bits = np.array([0x3F80, 0x7FC0], np.uint16).tobytes()  # 1.0, NaN
    raw_safetensors(folder / "model.safetensors", "head.bias", "BF16", (4,), bits * 2)
    net = Wide(WideConfig())
    with pytest.raises(LoadError, match="'head.bias' holds NaN"):
        msdiff.io.load_weights(net, [folder / "diffusion_pytorch_model.safetensors", folder / "model.safetensors"])


@pytest.mark.parametrize("peak", [65505.0, 70000.0, -1e5, 3e38])
def test_float16_load_beyond_the_float16_range_is_refused(tmp_path, peak):
    tensors = state()
    tensors["head.bias"][2] = peak
    folder = component(tmp_path / "m", tensors)
    msg = message(lambda: msdiff.load(folder, dtype="float16"))
    assert "'head.bias'" in msg and "float16 range" in msg and "float32" in msg and str(folder) in msg
    np.testing.assert_array_equal(msdiff.load(folder).head.bias.asnumpy(), tensors["head.bias"])


def test_float16_range_edge_loads(tmp_path):
    tensors = state()
    tensors["head.bias"][:2] = [65504.0, -65504.0]
    folder = component(tmp_path / "m", tensors)
    assert msdiff.load(folder, dtype="float16").head.bias.asnumpy()[:2].tolist() == [65504.0, -65504.0]
