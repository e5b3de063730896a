"""Real sizes: the released architectures (random weights) for one denoising step at their native resolution.

    python -m benchmarks.realsize [--filter REGEX] [--reference-python refenv/bin/python] [--cap-mb 12000]
                                  [--timeout 900] [--jsonl out.jsonl] [--smoke]
    python -m benchmarks.realsize --render out.jsonl      # the README table from a results file
    (also `python -m benchmarks --only realsize`)

Cases (`cases()`): the SD-1.5 / SD-2.1 / SD-XL / LDM-text2im UNets at 512 / 768 / 1024 / 256 pixels (batch 2:
classifier-free guidance), PixArt-XL-2 at 512 and 1024, DiT-XL/2 at 256 (batch 2), the SD VAE decode at 256, 512,
768 and 1024 pixels (batch 1; every family above uses that VAE architecture), and the T5-XXL encoder (120 tokens).
Configs of the released checkpoints, written here from public knowledge of the Hub repositories (architecture keys
only). msdiff in PyNative and graph mode (`mindspore.jit` of a function calling the net), fp32 and fp16;
diffusers (or transformers for T5) eager in `--reference-python`, built on torch's meta device and then filled, so
an fp16 build never holds an fp32 copy.

PyNative and eager cases whose first call takes over 60 s are timed by that one call (reps 0), so
their step includes first-call warm-up (where both calls ran, steady / first was 0.5-1.2). Every case is a fresh
process (its peak RSS, VmHWM, is its own) that stops itself when its RSS passes `--cap-mb` ("stopped at cap", with
what it had done by then) and is killed after `--timeout` seconds ("timed out after N s").
With `--lock FILE` each process holds an exclusive flock on FILE while it runs (one big process at a time on a
machine shared with other jobs that take the same lock); the wait is not timed. Results stream as JSON lines (one per case, with the load
average at its start and end: on a shared machine the times are loaded times; RSS does not depend on load).
"""
import argparse
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from . import specs
from ._timing import emit, parse_results, proc_rss

ROOT = str(Path(__file__).resolve().parents[1])
SINGLE_ABOVE_S = 60.0  # PyNative / eager: a first call slower than this is taken as the step (no second call)

# ---- released configs (architecture keys) ------------------------------------------------------------------------
SD15_UNET = specs.SD15_UNET  # runwayml/stable-diffusion-v1-5 unet
SD_VAE = specs.SD15_VAE  # the SD 1.x / 2.x / XL / PixArt / DiT / LDM-text2im VAE (same architecture)
SD21_UNET = dict(SD15_UNET, attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024, sample_size=96,
                 upcast_attention=True, use_linear_projection=True)  # stabilityai/stable-diffusion-2-1
SDXL_UNET = dict(  # stabilityai/stable-diffusion-xl-base-1.0
    SD15_UNET, addition_embed_type="text_time", addition_time_embed_dim=256, attention_head_dim=[5, 10, 20],
    block_out_channels=[320, 640, 1280], cross_attention_dim=2048, sample_size=128,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    projection_class_embeddings_input_dim=2816, transformer_layers_per_block=[1, 2, 10], use_linear_projection=True)
LDM_UNET = dict(SD15_UNET, cross_attention_dim=1280, sample_size=32)  # CompVis/ldm-text2im-large-256
PIXART_1024 = dict(  # PixArt-alpha/PixArt-XL-2-1024-MS transformer
    _class_name="PixArtTransformer2DModel", num_attention_heads=16, attention_head_dim=72, in_channels=4,
    out_channels=8, num_layers=28, cross_attention_dim=1152, attention_bias=True, sample_size=128, patch_size=2,
    activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_elementwise_affine=False, norm_eps=1e-6,
    caption_channels=4096)
PIXART_512 = dict(PIXART_1024, sample_size=64)  # PixArt-alpha/PixArt-XL-2-512x512
DIT_XL2_256 = dict(  # facebook/DiT-XL-2-256 transformer
    _class_name="DiTTransformer2DModel", num_attention_heads=16, attention_head_dim=72, in_channels=4,
    out_channels=8, num_layers=28, attention_bias=True, sample_size=32, patch_size=2,
    activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_elementwise_affine=False, norm_eps=1e-5)
T5_XXL = dict(  # google/t5-v1_1-xxl encoder (PixArt's text_encoder)
    _class_name="T5EncoderModel", model_type="t5", vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240,
    num_layers=24, num_heads=64, relative_attention_num_buckets=32, relative_attention_max_distance=128,
    layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu")
TINY_PIXART = dict(PIXART_512, num_attention_heads=2, attention_head_dim=8, num_layers=2, cross_attention_dim=16,
                   caption_channels=16, sample_size=8)

# family -> (default steps of msdiff's recipe / diffusers' pipeline, the VAE decode case's pixels)
FAMILIES = {"sd15": (50, 512), "sd21": (50, 768), "sdxl": (50, 1024), "ldm": (50, 256), "pixart512": (20, 512),
            "pixart1024": (20, 1024), "dit": (50, 256)}


def _net(family, net, config, pixels, batch, latent_div=8, tokens=None):
    return {"family": family, "net": net, "config": config, "pixels": pixels, "batch": batch,
            "latent": pixels // latent_div, "tokens": tokens}


def cases(smoke: bool = False) -> list:
    """Every real-size case (family, net, config, pixels, batch, dtype, mode, id), in priority order."""
    if smoke:
        nets = [_net("smoke", "unet", specs.TINY_UNET, 16, 2, tokens=8), _net("smoke", "vae", specs.TINY_VAE, 8, 1, 1),
                _net("smoke", "pixart", TINY_PIXART, 64, 2, tokens=8)]
        return [dict(n, dtype="float32", mode=m, id=f"{n['family']} {n['net']} {n['pixels']} fp32 {m}")
                for n in nets for m in specs.MODES]
    nets = [_net("sd15", "unet", SD15_UNET, 512, 2, tokens=77), _net("sd15", "vae", SD_VAE, 512, 1),
            _net("dit", "dit", DIT_XL2_256, 256, 2), _net("ldm", "unet", LDM_UNET, 256, 2, tokens=77),
            _net("dit", "vae", SD_VAE, 256, 1), _net("pixart512", "pixart", PIXART_512, 512, 2, tokens=120),
            _net("sd21", "unet", SD21_UNET, 768, 2, tokens=77), _net("sd21", "vae", SD_VAE, 768, 1),
            _net("pixart1024", "pixart", PIXART_1024, 1024, 2, tokens=120),
            _net("sdxl", "unet", SDXL_UNET, 1024, 2, tokens=77), _net("sdxl", "vae", SD_VAE, 1024, 1),
            _net("pixart", "t5", T5_XXL, 0, 1, tokens=120)]
    out = []
    for dtype in specs.DTYPES:
        for n in nets:
            for mode in specs.MODES:
                where = f"{n['pixels']}px" if n["pixels"] else f"{n['tokens']} tokens"
                out.append(dict(n, dtype=dtype, mode=mode,
                                id=f"{n['family']} {n['net']} {where} {specs.short_dtype(dtype)} {mode}"))
    return out


def case_inputs(case: dict) -> dict:
    """The call's inputs as numpy arrays (the same values on both sides)."""
    import numpy as np

    rng = np.random.default_rng(0)
    b, n, net, cfg = case["batch"], case["latent"], case["net"], case["config"]

    def normal(*shape):
        return rng.standard_normal(shape).astype(np.float32)
    t = np.full((b,), 999.0, np.float32)
    if net == "unet":
        out = {"sample": normal(b, 4, n, n), "timestep": t,
               "encoder_hidden_states": normal(b, case["tokens"], cfg["cross_attention_dim"])}
        if cfg.get("addition_embed_type") == "text_time":
            out["text_embeds"] = normal(b, cfg["projection_class_embeddings_input_dim"] - 6 * 256)
            out["time_ids"] = np.tile(np.array([[n * 8, n * 8, 0, 0, n * 8, n * 8]], np.float32), (b, 1))
        return out
    if net == "vae":
        return {"z": normal(b, cfg["latent_channels"], n, n)}
    if net == "pixart":
        out = {"sample": normal(b, 4, n, n), "timestep": t,
               "encoder_hidden_states": normal(b, case["tokens"], cfg["caption_channels"]),
               "encoder_attention_mask": np.ones((b, case["tokens"]), np.int64)}
        if cfg["sample_size"] == 128:  # use_additional_conditions
            out["resolution"] = np.tile(np.array([[n * 8, n * 8]], np.float32), (b, 1))
            out["aspect_ratio"] = np.ones((b, 1), np.float32)
        return out
    if net == "dit":
        return {"sample": normal(b, 4, n, n), "timestep": t, "class_labels": np.array([207, 1000][:b], np.int64)}
    if net == "t5":
        return {"input_ids": rng.integers(0, cfg["vocab_size"], (b, case["tokens"])).astype(np.int64),
                "attention_mask": np.ones((b, case["tokens"]), np.int64)}
    raise ValueError(f"unknown net {net!r}")


# ---- worker side (both libraries): watchdog and phases -----------------------------------------------------------

PHASE = {}  # what the case has done so far (merged into every emitted record)


def watchdog(cap_mb: int) -> None:
    """Exit this process (code 3) once its RSS passes cap_mb, after emitting what it had done."""
    import threading

    def watch():
        while True:
            rss = proc_rss()
            if rss["VmRSS"] > cap_mb:
                emit(dict(PHASE, stopped=f"stopped at cap ({cap_mb} MB)", rss_at_stop_mb=rss["VmRSS"]))
                os._exit(3)
            time.sleep(0.1)

    threading.Thread(target=watch, daemon=True).start()


def phase(**kw) -> None:
    """Record progress (and emit it: a case killed by the timeout keeps its last phase)."""
    PHASE.update(kw, **{"hwm_mb": proc_rss()["VmHWM"]})
    emit(dict(PHASE, partial=True))


def timed(call, quick_s: float = 20.0, single_above: float = None) -> dict:
    """First call, then one steady call (a second one when the first steady call is under quick_s). With
    `single_above` (eager / PyNative: nothing to compile), a first call slower than that is the step (reps 0)."""
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    phase(first_s=first)
    if single_above is not None and first > single_above:
        return {"first_s": first, "step_s": first, "reps": 0}
    times = []
    while not times or (len(times) < 2 and times[0] < quick_s):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return {"first_s": first, "step_s": min(times), "reps": len(times)}


def _random_fill(shape: tuple, name: str, pool):
    """nets_bench's cheap random weights (norm weights 1, other 1-D small, matrices +-1/sqrt(fan_in))."""
    from .nets_bench import _random_values

    return _random_values(pool, shape, name)


def run_msdiff(case: dict) -> dict:
    import mindspore as ms
    import numpy as np
    from mindspore.nn.utils import no_init_parameters

    from msdiff.io.registry import net_entry
    from .nets_bench import _pool

    ms.runtime.launch_blocking()
    dtype = {"float32": ms.float32, "float16": ms.float16}[case["dtype"]]
    t0 = time.perf_counter()
    entry = net_entry(case["config"]["_class_name"])
    with no_init_parameters():
        net = entry.cls(entry.config_from_diffusers(case["config"]), dtype=dtype)
    pool, np_dtype, nbytes = _pool(), (np.float16 if dtype == ms.float16 else np.float32), 0
    for name, p in net.parameters_and_names():
        value = _random_fill(tuple(p.shape), name, pool).astype(np_dtype)
        nbytes += value.nbytes
        p.set_data(ms.Tensor.from_numpy(value))
    net.set_train(False)
    phase(build_s=time.perf_counter() - t0, weight_mb=nbytes / 2 ** 20, built_rss_mb=proc_rss()["VmRSS"])
    x = {k: ms.Tensor(v.astype(np.int32) if v.dtype == np.int64 else v) for k, v in case_inputs(case).items()}
    kind = case["net"]
    if kind == "unet":
        extra = ("text_embeds", "time_ids") if "time_ids" in x else ()
        args = [x["sample"], x["timestep"], x["encoder_hidden_states"]] + [x[k] for k in extra]

        def step(*a):
            return net(*a)
    elif kind == "vae":
        args = [x["z"]]

        def step(z):
            return net.decode(z)
    elif kind == "pixart":
        args = [x[k] for k in ("sample", "timestep", "encoder_hidden_states", "encoder_attention_mask")]
        args += [x[k] for k in ("resolution", "aspect_ratio") if k in x]

        def step(*a):
            return net(*a)
    elif kind == "dit":
        args = [x["sample"], x["timestep"], x["class_labels"]]

        def step(*a):
            return net(*a)
    else:
        args = [x["input_ids"], x["attention_mask"]]

        def step(*a):
            return net(*a)
    fn = ms.jit(step) if case["mode"] == "graph" else step
    out = []

    def call():
        out[:] = [fn(*args)]
        out[0].asnumpy()
    res = timed(call, single_above=None if case["mode"] == "graph" else SINGLE_ABOVE_S)
    finite = bool(np.isfinite(out[0].astype(ms.float32).asnumpy()).all())
    return dict(res, finite=finite)


def _worker(payload: dict) -> int:
    case = payload["case"]
    PHASE.update(id=case["id"], lib=payload["lib"], load_start=os.getloadavg()[0])
    watchdog(payload["cap_mb"])
    try:
        if payload["lib"] == "msdiff":
            res = run_msdiff(case)
        else:
            from .realsize_reference import run_reference
            res = run_reference(case, phase, timed)
    except Exception as e:  # one line for the table; the case's process ends here
        emit(dict(PHASE, error=f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"))
        return 1
    rss = proc_rss()
    emit(dict(PHASE, **res, peak_rss_mb=rss["VmHWM"], load_end=os.getloadavg()[0]))
    return 0


# ---- parent side -------------------------------------------------------------------------------------------------

def _locked(lock_path):
    """An exclusive flock on lock_path (None: no lock); returns the open file (close it to release)."""
    if not lock_path:
        return None
    f = open(lock_path, "a")
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


def run_case(case: dict, lib: str, python: str, cap_mb: int, timeout: float, lock_path=None) -> dict:
    """One case in a fresh process under the lock; its final record, or its last phase with why it stopped."""
    payload = {"case": case, "lib": lib, "cap_mb": cap_mb}
    env = dict(os.environ, GLOG_v="3", PYTHONPATH=ROOT + (os.pathsep + os.environ["PYTHONPATH"]
                                                         if os.environ.get("PYTHONPATH") else ""))
    t_wait = time.perf_counter()
    lock = _locked(lock_path)
    waited = time.perf_counter() - t_wait
    start_load = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen([python, "-m", "benchmarks.realsize", "--worker", json.dumps(payload)], cwd=ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            timed_out = True
    finally:
        if lock is not None:
            lock.close()
    got = parse_results(stdout)
    row = dict(got[-1]) if got else {"id": case["id"], "lib": lib}
    row.pop("partial", None)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    row.update(head=head.strip() or None, utc=time.strftime("%Y-%m-%d %H:%M", time.gmtime()))
    row.update(family=case["family"], net=case["net"], pixels=case["pixels"], dtype=case["dtype"],
               mode=case["mode"] if lib == "msdiff" else "eager", wall_s=time.perf_counter() - t0,
               lock_wait_s=waited, load_at_start=start_load, load_at_end=os.getloadavg()[0])
    if timed_out:
        row["stopped"] = f"timed out after {timeout:.0f} s"
    elif proc.returncode not in (0, 3) and "error" not in row:
        tail = (stderr or stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        row["error"] = f"exit {proc.returncode}: {tail[0][:300]}"
    return row


def reference_case(case: dict) -> dict:
    """The eager reference case matching an msdiff case (mode does not apply)."""
    return dict(case, mode="eager", id=case["id"].rsplit(" ", 1)[0] + " eager")


def run(smoke: bool = False, ref_python=None, cap_mb: int = 12000, timeout: float = 900.0, select=None,
        lock_path=None, jsonl=None, log=print) -> list:
    """Every selected case (msdiff both modes, then the reference beside it); rows, also appended to jsonl."""
    rows, done_ref = [], set()
    todo = [c for c in cases(smoke) if select is None or select(c["id"])]
    for case in todo:
        jobs = [("msdiff", sys.executable, case)]
        ref = reference_case(case)
        if ref_python and ref["id"] not in done_ref:
            done_ref.add(ref["id"])
            jobs.append(("reference", ref_python, ref))
        for lib, python, c in jobs:
            log(f"  {lib}: {c['id']}")
            row = run_case(c, lib, python, cap_mb, timeout, lock_path)
            log("    " + json.dumps({k: row.get(k) for k in ("step_s", "first_s", "peak_rss_mb", "stopped",
                                                             "error", "load_at_start")}))
            rows.append(row)
            if jsonl:
                with open(jsonl, "a") as f:
                    f.write(json.dumps(row) + "\n")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.realsize", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny configs (seconds), no lock")
    p.add_argument("--filter", default=None, help="run only cases whose id matches this regular expression")
    p.add_argument("--reference-python", default=None, help="interpreter with torch + diffusers + transformers")
    p.add_argument("--cap-mb", type=int, default=12000, help="stop a case whose RSS passes this (default 12000)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per case process (default 900)")
    p.add_argument("--lock", default=None, help="flock file held per case (none by default)")
    p.add_argument("--jsonl", default=None, help="append each case's row here as a JSON line")
    p.add_argument("--render", default=None, metavar="JSONL", help="print the Markdown table of a results file")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return _worker(json.loads(args.worker))
    from .realsize_report import render
    if args.render:
        rows = [json.loads(line) for line in open(args.render) if line.strip()]
        print(render(rows))
        return 0
    import re
    lock = None if args.smoke else args.lock
    select = (lambda i: re.search(args.filter, i) is not None) if args.filter else None
    rows = run(args.smoke, args.reference_python, args.cap_mb, args.timeout, select, lock, args.jsonl,
               log=lambda m: print(m, file=sys.stderr, flush=True))
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
