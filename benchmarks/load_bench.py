"""Benchmark `msdiff.load`: wall time and peak RSS on SD-1.5-sized synthetic fp16 checkpoints.

Each case runs `msdiff.load` in a fresh Python subprocess, with the checkpoint in the page cache
(read once just before), and reports the load time (wall, and CPU = user + system, which is
steadier on a shared machine), the resident set before loading (after importing mindspore and
the net module), the peak resident set and the bytes the loaded net's parameters hold, so
`peak - before` reads against the weight bytes. The peak is VmHWM (the child's own address
space); ru_maxrss is recorded too, but Linux carries it over from the forking parent across
exec, so it never reads below the parent's resident set.

Checkpoints are synthetic: the real SD 1.5 `unet/config.json` and `text_encoder/config.json`
values, random fp16 tensors under the diffusers/transformers key names (the msdiff parameter
names, which these nets' `map_weights` maps one-to-one; they equal the state-dict keys and
shapes of diffusers 0.35.2 / transformers 4.57.1, plus the `position_ids` buffer that the
real SD 1.5 text-encoder file holds). Written once, tensor by tensor, under
/tmp/msdiff_load_bench (full size: 1.7 GB + 0.25 GB; MSDIFF_LOAD_BENCH_DIR overrides).

    python benchmarks/load_bench.py            # full size
    python benchmarks/load_bench.py --smoke    # tiny nets, seconds
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(os.environ.get("MSDIFF_LOAD_BENCH_DIR", "/tmp/msdiff_load_bench"))

# runwayml/stable-diffusion-v1-5 unet/config.json
SD15_UNET = {
    "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0", "act_fn": "silu",
    "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
# runwayml/stable-diffusion-v1-5 text_encoder/config.json (openai/clip-vit-large-patch14 text tower)
SD15_CLIP = {
    "_name_or_path": "openai/clip-vit-large-patch14", "architectures": ["CLIPTextModel"],
    "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2, "hidden_act": "quick_gelu",
    "hidden_size": 768, "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 3072,
    "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "model_type": "clip_text_model",
    "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1, "projection_dim": 768,
    "torch_dtype": "float32", "transformers_version": "4.22.0.dev0", "vocab_size": 49408,
}
TINY_UNET = dict(SD15_UNET, block_out_channels=[32, 64, 64, 64], cross_attention_dim=32, sample_size=8,
                 layers_per_block=1)
TINY_CLIP = dict(SD15_CLIP, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                 vocab_size=1000, projection_dim=32)

_ST_DTYPES = {"float16": "F16", "float32": "F32", "int64": "I64"}


def _param_shapes(config: dict) -> dict:
    """Parameter name -> shape of the msdiff net `config` describes, built without initialising data."""
    from mindspore.nn.utils import no_init_parameters

    from msdiff.io import class_name_of, net_entry

    entry = net_entry(class_name_of(config))
    with no_init_parameters():
        net = entry.cls(entry.config_from_diffusers(config))
    shapes = {name: tuple(p.shape) for name, p in net.parameters_and_names()}
    mapped = {name: entry.map_weights(name) for name in shapes}
    assert all(mapped[n] == n for n in shapes), "benchmark assumes identity key maps"
    return shapes


def write_safetensors(path: Path, tensors: dict, seed: int = 0) -> int:
    """Write name -> (shape, numpy dtype name) as random tensors, one at a time; -> data bytes."""
    header, offset = {}, 0
    for name, (shape, dtype) in tensors.items():
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        header[name] = {"dtype": _ST_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for name, (shape, dtype) in tensors.items():
            if dtype == "int64":
                array = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
            else:
                array = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(dtype)
            f.write(array.tobytes())
    return offset


def make_checkpoint(folder: Path, config: dict, weights_name: str, extra: dict = None) -> int:
    """Write config.json and a random fp16 safetensors file for `config` into `folder` (once); -> bytes."""
    done = folder / "done.json"
    if done.is_file() and json.loads(done.read_text())["config"] == config:
        return json.loads(done.read_text())["bytes"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    tensors = {name: (shape, "float16") for name, shape in _param_shapes(config).items()}
    tensors.update(extra or {})
    nbytes = write_safetensors(folder / weights_name, tensors)
    done.write_text(json.dumps({"config": config, "bytes": nbytes}))
    return nbytes


_CHILD = r"""
import json, resource, sys, time
def status_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
import mindspore
import msdiff
from msdiff.io import class_name_of, net_entry, read_config
net_entry(class_name_of(read_config(sys.argv[1])))
(mindspore.Tensor([1.0, 2.0]) * 2).asnumpy()
before = status_mb("VmRSS")
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime
t, (user0, sys0) = time.perf_counter(), cpu()
net = msdiff.load(sys.argv[1], dtype=sys.argv[2])
seconds, (user1, sys1) = time.perf_counter() - t, cpu()
peak = status_mb("VmHWM")
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
params = list(net.get_parameters())
assert not any(p.has_init for p in params), "uninitialised parameter after load"
nbytes = sum(p.nbytes for p in params)
print(json.dumps({"seconds": seconds, "cpu_seconds": user1 - user0 + sys1 - sys0,
                  "user_seconds": user1 - user0, "sys_seconds": sys1 - sys0, "rss_before_mb": before, "peak_rss_mb": peak, "ru_maxrss_mb": maxrss,
                  "rss_after_mb": status_mb("VmRSS"), "net_weight_mb": nbytes / 2**20}))
"""


def warm_page_cache(folder: Path) -> None:
    """Read the folder's safetensors files once, so loads are timed from the page cache, not the disk."""
    buffer = bytearray(64 << 20)
    for path in folder.glob("*.safetensors"):
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buffer):
                pass


def measure(folder: Path, dtype: str) -> dict:
    """Run `msdiff.load(folder, dtype=dtype)` in a fresh subprocess (page cache warm); -> timing/memory dict."""
    warm_page_cache(folder)
    out = subprocess.run([sys.executable, "-c", _CHILD, str(folder), dtype], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"load of {folder} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(smoke: bool = False) -> list:
    """Load benchmarks (SD-1.5 UNet fp16, CLIP-L text encoder fp16 checkpoints); -> one dict per case."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) if smoke else ROOT
        unet_cfg, clip_cfg = (TINY_UNET, TINY_CLIP) if smoke else (SD15_UNET, SD15_CLIP)
        position_ids = {"text_model.embeddings.position_ids": ((1, clip_cfg["max_position_embeddings"]), "int64")}
        checkpoints = {
            "unet_sd15": (root / "unet", make_checkpoint(root / "unet", unet_cfg,
                                                         "diffusion_pytorch_model.safetensors")),
            "clip_l": (root / "text_encoder", make_checkpoint(root / "text_encoder", clip_cfg, "model.safetensors",
                                                              position_ids)),
        }
        rows = []
        for name, (folder, nbytes) in checkpoints.items():
            for dtype in ("float16", "float32"):
                row = {"name": f"load/{name}{'_smoke' if smoke else ''}/fp16->{dtype}",
                       "checkpoint_mb": nbytes / 2**20}
                row.update(measure(folder, dtype))
                row["extra_rss_mb"] = row["peak_rss_mb"] - row["rss_before_mb"]
                rows.append(row)
        return rows


def main() -> None:
    """Print the benchmark table and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny nets (seconds)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = run(args.smoke)
    print(f"{'case':36s} {'ckpt MB':>8s} {'net MB':>7s} {'wall s':>7s} {'user s':>6s} {'sys s':>6s} "
          f"{'RSS0 MB':>8s} {'peak MB':>8s} {'peak-RSS0':>9s}")
    for r in rows:
        print(f"{r['name']:36s} {r['checkpoint_mb']:8.0f} {r['net_weight_mb']:7.0f} {r['seconds']:7.2f} "
              f"{r['user_seconds']:6.2f} {r['sys_seconds']:6.2f} {r['rss_before_mb']:8.0f} {r['peak_rss_mb']:8.0f} "
              f"{r['extra_rss_mb']:9.0f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
