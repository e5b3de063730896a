"""Peak RSS of a Stable-Video-Diffusion-shaped UNet step and temporal-VAE decode in fp32, msdiff and diffusers.

    python -m benchmarks.svd_memory [--size 128] [--frames 14] [--reference-python REFENV/bin/python]

The nets are stabilityai/stable-video-diffusion-img2vid's UNetSpatioTemporalConditionModel and
AutoencoderKLTemporalDecoder built from their released configs (written here from public knowledge of the Hub
repo) with random weights; one fresh process per case, so each peak (VmHWM of /proc/self/status) is that case's
alone. Cases: "step" (one guided UNet call: batch 2 x frames, sample [2, f, 8, h/8, w/8]), "decode-<n>" (the
temporal decoder over the f frames' latents, decode_chunk_size n). msdiff runs in PyNative fp32.
"""
import argparse
import json
import subprocess
import sys
import time

from ._timing import proc_rss

UNET = dict(_class_name="UNetSpatioTemporalConditionModel", sample_size=96, in_channels=8, out_channels=4,
            block_out_channels=[320, 640, 1280, 1280], layers_per_block=2,
            down_block_types=["CrossAttnDownBlockSpatioTemporal"] * 3 + ["DownBlockSpatioTemporal"],
            up_block_types=["UpBlockSpatioTemporal"] + ["CrossAttnUpBlockSpatioTemporal"] * 3,
            cross_attention_dim=1024, num_attention_heads=[5, 10, 20, 20], transformer_layers_per_block=1,
            addition_time_embed_dim=256, projection_class_embeddings_input_dim=768, num_frames=14)
VAE = dict(_class_name="AutoencoderKLTemporalDecoder", in_channels=3, out_channels=3,
           block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4, layers_per_block=2,
           latent_channels=4, sample_size=768, scaling_factor=0.18215, force_upcast=True)


_PHASE = {}  # what the case had done when the watchdog stopped it


def _watchdog(limit_mb: int) -> None:
    """Exit this process (code 3) when its RSS passes limit_mb: the machine is shared and has no swap."""
    import os
    import threading

    def watch():
        while True:
            if proc_rss()["VmRSS"] > limit_mb:
                print(json.dumps({"error": f"RSS above the {limit_mb} MB limit", **_PHASE}), flush=True)
                os._exit(3)
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()


def _inputs(case: str, size: int, frames: int):
    import numpy as np
    rng = np.random.default_rng(0)
    h = size // 8
    if case == "step":
        return dict(sample=rng.standard_normal((2, frames, 8, h, h), dtype=np.float32),
                    timestep=np.float32(0.7), encoder_hidden_states=rng.standard_normal((2, 1, 1024),
                                                                                         dtype=np.float32),
                    added_time_ids=np.array([[6.0, 127.0, 0.02]] * 2, np.float32))
    return dict(latents=rng.standard_normal((frames, 4, h, h), dtype=np.float32))


def _msdiff(case: str, size: int, frames: int) -> dict:
    import mindspore as ms

    from msdiff.io.registry import net_entry
    from mindspore.nn.utils import no_init_parameters
    import numpy as np
    config = UNET if case == "step" else VAE
    entry = net_entry(config["_class_name"])
    with no_init_parameters():  # then one buffer per parameter, as msdiff.load fills them
        net = entry.cls(entry.config_from_diffusers(config))
    rng = np.random.default_rng(0)
    for _, p in net.parameters_and_names():
        p.set_data(ms.Tensor.from_numpy(rng.standard_normal(p.shape, dtype=np.float32) * np.float32(0.02)))
    net.set_train(False)
    x = {k: ms.Tensor(v) for k, v in _inputs(case, size, frames).items()}
    loaded = _PHASE["loaded"] = proc_rss()
    start = time.perf_counter()
    if case == "step":
        out = net(x["sample"], x["timestep"], x["encoder_hidden_states"], x["added_time_ids"])
    else:
        chunk = int(case.split("-")[1])
        z = x["latents"]
        out = [net.decode(z[i:i + chunk], z[i:i + chunk].shape[0]) for i in range(0, frames, chunk)]
        out = out[-1]
    out.asnumpy()
    return dict(loaded=loaded, seconds=time.perf_counter() - start, **proc_rss())


def _diffusers(case: str, size: int, frames: int) -> dict:
    import diffusers
    import torch

    config = dict(UNET if case == "step" else VAE)
    net = getattr(diffusers, config.pop("_class_name"))(**config).eval()
    x = {k: torch.from_numpy(v) if hasattr(v, "shape") and v.shape else torch.tensor(float(v))
         for k, v in _inputs(case, size, frames).items()}
    loaded = proc_rss()
    start = time.perf_counter()
    with torch.no_grad():
        if case == "step":
            net(**x).sample.numpy()
        else:
            chunk = int(case.split("-")[1])
            z = x["latents"]
            for i in range(0, frames, chunk):
                net.decode(z[i:i + chunk], num_frames=z[i:i + chunk].shape[0]).sample.numpy()
    return dict(loaded=loaded, seconds=time.perf_counter() - start, **proc_rss())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.svd_memory", description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128, help="pixels per side (latents size / 8)")
    p.add_argument("--frames", type=int, default=14)
    p.add_argument("--cases", nargs="*", default=["step", "decode-14", "decode-2"])
    p.add_argument("--reference-python", default=None, help="an interpreter with diffusers 0.35.2 and torch")
    p.add_argument("--limit-mb", type=int, default=14000, help="stop a case whose RSS passes this (default 14000)")
    p.add_argument("--run", nargs=2, metavar=("LIB", "CASE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run:
        lib, case = args.run
        _watchdog(args.limit_mb)
        print(json.dumps((_msdiff if lib == "msdiff" else _diffusers)(case, args.size, args.frames)))
        return 0
    for case in args.cases:
        for lib, python in (("msdiff", sys.executable), ("diffusers", args.reference_python)):
            if python is None:
                continue
            cmd = [python, "-m", "benchmarks.svd_memory", "--size", str(args.size), "--frames", str(args.frames),
                   "--limit-mb", str(args.limit_mb), "--run", lib, case]
            done = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            result = json.loads(lines[-1]) if lines else {"error": done.stderr[-300:]}
            print(json.dumps({"case": case, "lib": lib, "size": args.size, "frames": args.frames, **result}),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
