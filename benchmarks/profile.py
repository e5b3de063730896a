"""Where one SD-1.5 UNet step's (or VAE decode's) time goes, by op kind: msdiff (PyNative, graph) next to diffusers.

`python -m benchmarks.profile [--net unet|vae] [--latent 32] [--modes pynative,graph] [--reference-python PY]`
(also `python -m benchmarks --only profile`). UNet: batch 2 (classifier-free guidance); VAE (`--net vae`):
`decode` of batch 1 (latent 64 = a 512x512 image). The real SD-1.5 configs (benchmarks/specs.py), random
weights (nets_bench.build_net), fp32.

Each side runs in a fresh process: one warm-up call, one timed call (the "step" wall time), one
profiled call.
- msdiff PyNative (under `mindspore.runtime.launch_blocking()`): every public function of
  `msdiff.ops` is wrapped with a timer (the nets call them as `ops.x(...)` attributes of the
  package, so patching the package reaches every call), and MindSpore's profiler
  (`mindspore.profiler.profile`, CPU activity: one timestamped record per kernel launch) runs
  around the same call. A kernel that starts inside an msdiff op is that op's kind (conv2d's
  im2col, matmul, bias add and casts are all "conv"), one outside msdiff.ops is classified by its
  kernel type (the residual adds, the blocks' reshapes / transposes / concats). "host overhead" is
  the step's wall time minus all kernel time (Python, dispatch, launch).
- msdiff graph (`mindspore.jit` of a function calling the net): the profiler's per-kernel totals,
  kinds by kernel type (see `graph_kernel_kind`: conv's and attention's BatchMatMul are one row).
- torch: `torch.profiler` key_averages, self CPU time per aten op, grouped into the same kinds.
"""
import argparse
import bisect
import collections
import glob
import json
import os
import sys
import tempfile
import time

from . import specs
from ._timing import emit, run_worker

GRAPH_BMM = "batched matmul (graph)"
KINDS = ("conv", "matmul/linear", "attention", GRAPH_BMM, "norm", "elementwise/activation", "data movement",
         "other", "host overhead")

# msdiff.ops function -> kind (time inside these functions, all kernels included).
OP_KINDS = {
    "conv2d": "conv", "conv3d": "conv", "conv_transpose2d": "conv", "temporal_conv": "conv",
    "upfirdn2d": "conv", "upsample_fir": "conv", "downsample_fir": "conv", "linear": "matmul/linear",
    "attention": "attention", "softmax_bmm_attention": "attention", "group_norm": "norm", "layer_norm": "norm",
    "rms_norm": "norm", "global_response_norm": "norm", "silu": "elementwise/activation",
    "gelu": "elementwise/activation", "quick_gelu": "elementwise/activation", "geglu": "elementwise/activation",
    "activate": "elementwise/activation", "interpolate": "data movement", "pad": "data movement",
    "embedding": "data movement", "swapaxes": "data movement", "expand_as": "data movement",
}

_KERNEL_WORDS = (  # (kind, lower-case substrings of a MindSpore kernel type or a torch aten op name)
    ("attention", ("softmax", "flashattention", "scaled_dot_product", "flash_attention")),
    ("norm", ("groupnorm", "group_norm", "layernorm", "layer_norm", "batchnorm", "batch_norm", "rmsnorm")),
    ("conv", ("conv", "im2col", "col2im", "unfold", "fold")),
    ("matmul/linear", ("matmul", "addmm", "aten::mm", "aten::bmm", "linear", "dense", "baddbmm")),
    ("data movement", ("reshape", "transpose", "permute", "concat", "aten::cat", "cast", "copy", "contiguous",
                       "broadcast", "slice", "split", "chunk", "tile", "gather", "expand", "squeeze", "view",
                       "narrow", "pad", "resize", "upsample_nearest", "clone", "_to_copy", "aten::to", "stack",
                       "select", "index", "flatten", "empty", "zeros", "ones", "fill", "as_strided", "t")),
    ("elementwise/activation", ("add", "sub", "mul", "div", "sigmoid", "silu", "gelu", "tanh", "exp", "sin",
                                "cos", "sqrt", "rsqrt", "square", "pow", "neg", "max", "min", "erf", "relu",
                                "abs", "log", "clamp", "where", "arange", "mean", "sum", "float")),
)


def kernel_kind(name: str) -> str:
    """Kind of a kernel type (MindSpore) or aten op (torch) by name; "other" when nothing matches."""
    low = name.lower()
    for kind, words in _KERNEL_WORDS:
        for w in words:
            if (low == w or low.endswith("::" + w)) if len(w) <= 2 else w in low:
                return kind
    return "other"


def kernel_type(name: str) -> str:
    """'Default/Im2Col-op4' -> 'Im2Col' (PyNative names some kernels like graph nodes)."""
    return name.rsplit("/", 1)[-1].split("-op", 1)[0]


def graph_kernel_kind(op_type: str) -> str:
    """Kind of a graph-mode kernel by type. `mindspore.jit` of a function keeps no reliable Cell scope (MindSpore
    2.10 names every Linear's MatMul after one Cell), so kinds come from the kernel type alone: Im2Col is conv,
    MatMul is linear (ops.linear's transpose_b MatMul), Softmax attention, and BatchMatMul, which both conv
    (ops.conv2d's weight @ columns) and attention (q k^T, p v) run, is its own row."""
    return GRAPH_BMM if op_type == "BatchMatMul" else kernel_kind(op_type)


# ---- msdiff worker -------------------------------------------------------------------------------

class _OpTimer:
    """Wraps msdiff.ops' public functions: exclusive wall time per function and (start, end, name) intervals."""

    def __init__(self):
        import msdiff.ops as mops

        self.module, self.saved = mops, {}
        self.ms = collections.Counter()
        self.calls = collections.Counter()
        self.intervals = []
        self.stack = []
        for name in mops.__all__:
            fn = getattr(mops, name)
            self.saved[name] = fn
            setattr(mops, name, self._wrap(name, fn))

    def _wrap(self, name, fn):
        def timed(*args, **kwargs):
            self.stack.append(0)
            t0 = time.time_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                t1 = time.time_ns()
                inner = self.stack.pop()
                self.ms[name] += (t1 - t0 - inner) / 1e6
                self.calls[name] += 1
                if self.stack:
                    self.stack[-1] += t1 - t0
                else:
                    self.intervals.append((t0, t1, name))
        return timed

    def reset(self):
        self.ms.clear()
        self.calls.clear()
        self.intervals.clear()

    def restore(self):
        for name, fn in self.saved.items():
            setattr(self.module, name, fn)


def _profiled(call, folder: str):
    """Run call() under MindSpore's CPU profiler; the FRAMEWORK folder it wrote."""
    from mindspore.profiler import ProfilerActivity, profile, tensorboard_trace_handler

    prof = profile(activities=[ProfilerActivity.CPU], on_trace_ready=tensorboard_trace_handler(folder))
    prof.start()
    call()
    prof.stop()
    found = glob.glob(os.path.join(folder, "*", "FRAMEWORK"))
    if not found:
        raise RuntimeError(f"MindSpore's profiler wrote no FRAMEWORK folder under {folder}")
    return found[0]


def _kernel_records(framework: str) -> list:
    """(start ns, ms, kernel type) of every kernel launch in cpu_op_execute_timestamp_*.txt."""
    out = []
    for path in glob.glob(os.path.join(framework, "cpu_op_execute_timestamp_*.txt")):
        with open(path) as f:
            for line in f:
                parts = line.strip().split(";")
                if len(parts) < 3:
                    continue
                for rec in parts[2].split():
                    start, dur = rec.split(",")[:2]
                    out.append((int(start), float(dur), parts[0]))
    return out


def _graph_records(framework: str) -> list:
    """(full op name, kernel type, total ms, occurrences) from cpu_op_detail_info_*.csv."""
    import csv

    out = []
    for path in glob.glob(os.path.join(framework, "cpu_op_detail_info_*.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                out.append((row["full_op_name"], row["op_type"], float(row["op_total_time(ms)"]),
                            int(row["op_occurrences"])))
    return out


def _inputs(case: dict):
    import mindspore as ms
    import numpy as np

    rng = np.random.default_rng(0)
    n, b = case["latent"], case["batch"]
    x = ms.Tensor(rng.standard_normal((b, 4, n, n)).astype(np.float32))
    if case["net"] == "vae":
        return (x,)
    ctx = ms.Tensor(rng.standard_normal((b, specs.TEXT_TOKENS, case["config"]["cross_attention_dim"]))
                    .astype(np.float32))
    return x, ms.Tensor(np.full((b,), 999.0, np.float32)), ctx


def _add(table: dict, detail: dict, kind: str, key: str, ms: float):
    table[kind] = table.get(kind, 0.0) + ms
    detail[f"{kind} | {key}"] = detail.get(f"{kind} | {key}", 0.0) + ms


def run_msdiff(case: dict) -> dict:
    """Profile one msdiff UNet step in case['mode'] in this process."""
    import mindspore as ms

    from .nets_bench import build_net

    ms.runtime.launch_blocking()
    net = build_net(case)
    args = _inputs(case)
    graph = case["mode"] == "graph"
    timer = None if graph else _OpTimer()

    def step(sample, timestep, context):
        return net(sample, timestep, context)

    def decode(z):
        return net.decode(z)
    fn = decode if case["net"] == "vae" else step
    fn = ms.jit(fn) if graph else fn

    def call():
        fn(*args).asnumpy()
    t0 = time.perf_counter()
    call()
    first_s = time.perf_counter() - t0
    if timer:
        timer.reset()
    t0 = time.perf_counter()
    call()
    wall_ms = (time.perf_counter() - t0) * 1e3
    op_ms, op_calls = (dict(timer.ms), dict(timer.calls)) if timer else ({}, {})
    if timer:
        timer.reset()
    with tempfile.TemporaryDirectory(prefix="msdiff-profile-") as folder:
        t0 = time.perf_counter()
        framework = _profiled(call, folder)
        profiled_ms = (time.perf_counter() - t0) * 1e3
        table, detail = {}, {}
        if graph:
            for full, op_type, ms_total, _ in _graph_records(framework):
                _add(table, detail, graph_kernel_kind(op_type), op_type, ms_total)
        else:
            starts = [iv[0] for iv in timer.intervals]
            for start, dur, name in _kernel_records(framework):
                op_type = kernel_type(name)
                i = bisect.bisect_right(starts, start) - 1
                inside = i >= 0 and start < timer.intervals[i][1]
                if inside:
                    name = timer.intervals[i][2]
                    _add(table, detail, OP_KINDS.get(name, "other"), f"ops.{name}: {op_type}", dur)
                else:
                    _add(table, detail, kernel_kind(op_type), f"outside msdiff.ops: {op_type}", dur)
            timer.restore()
    kernels = sum(table.values())
    return {"side": f"msdiff {case['mode']}", "first_s": first_s, "wall_ms": wall_ms, "profiled_ms": profiled_ms,
            "kernel_ms": kernels, "kinds": table, "detail": detail, "op_ms": op_ms, "op_calls": op_calls}


# ---- torch worker --------------------------------------------------------------------------------

def run_torch(case: dict) -> dict:
    """Profile one diffusers UNet step (eager) in this process with torch.profiler."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    n, b = case["latent"], case["batch"]
    x = torch.randn((b, 4, n, n), generator=g)
    if case["net"] == "vae":
        net = AutoencoderKL.from_config(case["config"]).eval()

        def call():
            net.decode(x, return_dict=False)
    else:
        net = UNet2DConditionModel.from_config(case["config"]).eval()
        ctx = torch.randn((b, specs.TEXT_TOKENS, case["config"]["cross_attention_dim"]), generator=g)
        t = torch.full((b,), 999.0)

        def call():
            net(x, t, ctx, return_dict=False)
    with torch.inference_mode():
        t0 = time.perf_counter()
        call()
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        call()
        wall_ms = (time.perf_counter() - t0) * 1e3
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            call()
    table, detail = {}, {}
    for ev in prof.key_averages():
        ms_self = ev.self_cpu_time_total / 1e3
        if ms_self > 0:
            _add(table, detail, kernel_kind(ev.key), ev.key, ms_self)
    return {"side": "torch", "first_s": first_s, "wall_ms": wall_ms, "kernel_ms": sum(table.values()),
            "kinds": table, "detail": detail, "torch_threads": torch.get_num_threads()}


# ---- parent side ---------------------------------------------------------------------------------

def _case(latent: int, smoke: bool, mode: str, net: str = "unet") -> dict:
    if net == "vae":
        config = specs.TINY_VAE if smoke else specs.SD15_VAE
        return {"net": "vae", "config": config, "latent": latent, "batch": 1, "dtype": "float32", "mode": mode}
    config = specs.TINY_UNET if smoke else specs.SD15_UNET
    return {"net": "unet", "config": config, "latent": latent, "batch": 2, "dtype": "float32", "mode": mode}


def _with_overhead(r: dict) -> dict:
    kinds = dict(r["kinds"])
    kinds["host overhead"] = max(r["wall_ms"] - r["kernel_ms"], 0.0)
    return kinds


def _cell(kinds: dict, kind: str, total: float) -> str:
    if kind not in kinds:
        return f"{'n/a':>16}"
    return f"{kinds[kind]:9.1f} ({100 * kinds[kind] / total:4.1f}%)"


def render(results: list) -> str:
    """One table: kind, ms and share per side, msdiff / torch ratio per kind; then the top kernels per side."""
    sides = [r for r in results if "kinds" in r]
    torch_r = next((r for r in sides if r["side"] == "torch"), None)
    cols = [(r["side"], _with_overhead(r), r["wall_ms"]) for r in sides]
    head = f"{'kind':<24}" + "".join(f"  {name + ' ms (share)':>18}" for name, _, _ in cols)
    ratios = [(name, k) for name, k, _ in cols if torch_r and name != "torch"]
    head += "".join(f"  {name.replace('msdiff ', '') + '/torch':>14}" for name, _ in ratios)
    lines = [head, "-" * len(head)]
    tk = _with_overhead(torch_r) if torch_r else {}
    for kind in KINDS:
        line = f"{kind:<24}" + "".join(f"  {_cell(k, kind, total):>18}" for _, k, total in cols)
        for _, k in ratios:
            a, b = k.get(kind, 0.0), tk.get(kind, 0.0)
            line += f"  {(f'{a / b:.2f}x' if a and b > 0.05 else 'n/a'):>14}"
        lines.append(line)
    line = f"{'step (wall)':<24}" + "".join(f"  {total:9.1f} (100%) " for _, _, total in cols)
    for name, _ in ratios:
        line += f"  {next(r['wall_ms'] for r in sides if r['side'] == name) / torch_r['wall_ms']:13.2f}x"
    lines.append(line)
    for r in results:
        if "error" in r:
            lines.append(f"{r['side']}: {r['error']}")
    for r in sides:
        lines.append(f"\n-- top kernels: {r['side']} (kind | kernel: ms) --")
        for key, ms in sorted(r["detail"].items(), key=lambda kv: -kv[1])[:14]:
            lines.append(f"  {key:<64} {ms:9.1f}")
        if r.get("op_ms"):
            top = sorted(r["op_ms"].items(), key=lambda kv: -kv[1])[:8]
            lines.append("  wall per msdiff.ops function (exclusive, calls): "
                         + ", ".join(f"{k} {v:.0f} ms ({r['op_calls'][k]})" for k, v in top))
    return "\n".join(lines)


def run(latent: int = 32, modes=("pynative", "graph"), ref_python=None, smoke: bool = False,
        timeout: float = 1800.0, log=print, net: str = "unet") -> dict:
    """Profile each side in a fresh process; {meta, results}."""
    from .nets_bench import ROOT

    results = []
    load = [" ".join(f"{x:.1f}" for x in os.getloadavg())]
    jobs = [(sys.executable, "msdiff", _case(latent, smoke, m, net)) for m in modes]
    if ref_python:
        jobs.append((ref_python, "torch", _case(latent, smoke, "eager", net)))
    for python, side, case in jobs:
        log(f"  profile: {side} {net} {case['mode']} {latent}x{latent} b{case['batch']}")
        got, err = run_worker(python, "benchmarks.profile", {"side": side, "case": case}, timeout, ROOT)
        results.append(got[0] if got else {"side": f"{side} {case['mode']}".replace(" eager", ""),
                                           "error": err or "no result"})
        load.append(" ".join(f"{x:.1f}" for x in os.getloadavg()))
    return {"meta": {"net": net, "latent": latent, "batch": jobs[0][2]["batch"], "smoke": smoke, "loadavg": load,
                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, "results": results}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.splitlines()[0])
    p.add_argument("--net", choices=("unet", "vae"), default="unet",
                   help="unet: one UNet step, batch 2; vae: one VAE decode, batch 1 (default unet)")
    p.add_argument("--latent", type=int, default=None, help="latent size (default 32, vae 64; smoke 8, vae 4)")
    p.add_argument("--modes", default="pynative,graph", help="msdiff modes, comma list (default pynative,graph)")
    p.add_argument("--smoke", action="store_true", help="tiny UNet (seconds)")
    p.add_argument("--reference-python", default=None, help="interpreter with torch + diffusers")
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:
        payload = json.loads(args.case)
        try:
            emit(run_torch(payload["case"]) if payload["side"] == "torch" else run_msdiff(payload["case"]))
        except Exception as e:
            emit({"side": payload["side"], "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"})
        return 0
    from . import reference

    ref = reference.resolve_python(args.reference_python, args.no_reference)
    vae = args.net == "vae"
    latent = args.latent or ((4 if vae else 8) if args.smoke else (64 if vae else 32))
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    result = run(latent, modes, ref, args.smoke, log=lambda m: print(m, file=sys.stderr, flush=True), net=args.net)
    what = (f"VAE decode, batch 1, {latent * 8}x{latent * 8} image" if vae
            else f"UNet step, batch 2, {latent}x{latent} latents")
    print(f"== profile: SD-1.5 {what}, fp32 "
          f"({result['meta']['date']}, load average {' -> '.join(result['meta']['loadavg'])}) ==")
    print(render(result["results"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_v", "3")
    sys.exit(main())
