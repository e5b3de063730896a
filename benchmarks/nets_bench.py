"""Net benchmarks (UNet step, VAE decode; PyNative and graph; fp32 and fp16) and the fp16 loading-memory check.

Each case runs in a fresh process (`python -m benchmarks.nets_bench --case JSON`) so its peak RSS
(ru_maxrss) is its own. Random weights: parameters are created without initialisation and filled
from one shared random pool scaled by 1/sqrt(fan_in) (torch's default bound), which is cheap.
"""
import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

from . import reference, specs
from ._timing import current_rss_mb, emit, peak_rss_mb, run_worker, time_call

ROOT = str(Path(__file__).resolve().parents[1])
_POOL_SIZE = 1 << 22


# ---- worker side (MindSpore) -------------------------------------------------------------------

def _net_module(net: str):
    if net == "unet":
        from msdiff.nets import unet_2d_condition as m
        return m, m.UNet2DConditionModel
    from msdiff.nets import autoencoder_kl as m
    return m, m.AutoencoderKL


def _pool():
    import numpy as np

    return np.random.default_rng(0).uniform(-1.0, 1.0, _POOL_SIZE).astype(np.float32)


def _random_values(pool, shape: tuple, name: str):
    """Cheap random weights: 1-D norm weights 1, other 1-D tensors small, matrices uniform(+-1/sqrt(fan_in))."""
    import numpy as np

    size = int(np.prod(shape)) if shape else 1
    if len(shape) == 1 and name.endswith("weight"):
        return np.ones(shape, np.float32)
    reps = -(-size // pool.size)
    a = (np.tile(pool, reps) if reps > 1 else pool)[:size]
    bound = 0.01 if len(shape) <= 1 else (size // shape[0]) ** -0.5
    return (a * np.float32(bound)).reshape(shape)


def build_net(case: dict):
    """The msdiff net of a case, built without initialisation and filled with cheap random weights."""
    import mindspore as ms
    import numpy as np
    from mindspore.nn.utils import no_init_parameters

    module, cls = _net_module(case["net"])
    dtype = {"float32": ms.float32, "float16": ms.float16}[case["dtype"]]
    with no_init_parameters():
        net = cls(module.config_from_diffusers(case["config"]), dtype=dtype)
    pool = _pool()
    np_dtype = np.float16 if dtype == ms.float16 else np.float32
    for name, p in net.parameters_and_names():
        p.set_data(ms.Tensor.from_numpy(_random_values(pool, tuple(p.shape), name).astype(np_dtype)))
    net.set_train(False)
    return net


def run_net_case(case: dict, smoke: bool) -> dict:
    """Build, then time the first call (graph compile included) and steady calls; peak RSS of this process."""
    import mindspore as ms
    import numpy as np

    base = current_rss_mb()
    t0 = time.perf_counter()
    net = build_net(case)
    build_s = time.perf_counter() - t0
    built = current_rss_mb()
    rng = np.random.default_rng(0)
    n, b = case["latent"], case["batch"]
    if case["net"] == "unet":
        x = ms.Tensor(rng.standard_normal((b, 4, n, n)).astype(np.float32))
        ctx = ms.Tensor(rng.standard_normal((b, specs.TEXT_TOKENS, case["config"]["cross_attention_dim"]))
                        .astype(np.float32))
        t = ms.Tensor(np.full((b,), 999.0, np.float32))
        args = (x, t, ctx)

        def step(sample, timestep, context):
            return net(sample, timestep, context)
    else:
        args = (ms.Tensor(rng.standard_normal((b, case["config"]["latent_channels"], n, n)).astype(np.float32)),)

        def step(z):
            return net.decode(z)
    fn = ms.jit(step) if case["mode"] == "graph" else step
    out = []

    def call():
        out[:] = [fn(*args)]
        out[0].asnumpy()
    min_time, max_reps = (0.0, 1) if smoke else (20.0, 3)
    res = time_call(call, min_time, max_reps)
    finite = bool(np.isfinite(out[0].astype(ms.float32).asnumpy()).all())
    return {"id": case["id"], "label": case["label"], "net": case["net"], "dtype": case["dtype"],
            "mode": case["mode"], "build_s": build_s, "first_s": res["first_s"], "ms": res["ms"],
            "compile_s": res["compile_s"] if case["mode"] == "graph" else None, "reps": res["reps"],
            "finite": finite, "base_rss_mb": base, "built_rss_mb": built, "peak_rss_mb": peak_rss_mb()}


def _write_safetensors(path: Path, entries: list, pool) -> int:
    """Stream an fp16 safetensors file of `entries` [(name, shape)] from a random pool; returns data bytes."""
    import numpy as np

    header, offset = {}, 0
    for name, shape in entries:
        nbytes = 2 * int(np.prod(shape))
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    chunk = (pool * np.float32(0.02)).astype(np.float16).tobytes()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        left = offset
        while left > 0:
            part = chunk[:min(left, len(chunk))]
            f.write(part)
            left -= len(part)
    return offset


def prepare_load(case: dict) -> dict:
    """Write config.json and a synthetic fp16 safetensors file shaped like the case's UNet into case['dir']."""
    import mindspore as ms
    from mindspore.nn.utils import no_init_parameters

    module, cls = _net_module("unet")
    with no_init_parameters():
        net = cls(module.config_from_diffusers(case["config"]), dtype=ms.float16)
    entries = [(name, tuple(p.shape)) for name, p in net.parameters_and_names()]
    folder = Path(case["dir"])
    (folder / "config.json").write_text(json.dumps(case["config"]))
    nbytes = _write_safetensors(folder / "diffusion_pytorch_model.safetensors", entries, _pool())
    return {"tensors": len(entries), "weight_mb": nbytes / 2 ** 20}


def run_load(case: dict) -> dict:
    """msdiff.load of the synthetic folder with dtype float16; peak RSS over the RSS before loading."""
    import msdiff
    import msdiff.io  # noqa: F401  (imports counted in the baseline, not in the load)
    import msdiff.nets.unet_2d_condition  # noqa: F401

    base = current_rss_mb()
    t0 = time.perf_counter()
    net = msdiff.load(case["dir"], dtype="float16")
    load_s = time.perf_counter() - t0
    n_params = sum(1 for _ in net.get_parameters())
    return {"load_s": load_s, "base_rss_mb": base, "peak_rss_mb": peak_rss_mb(), "parameters": n_params}


def _worker(payload: dict) -> None:
    import mindspore as ms

    if payload.get("blocking", True):
        ms.runtime.launch_blocking()
    for case in payload["cases"]:
        try:
            if case["kind"] == "net":
                emit(run_net_case(case, payload["smoke"]))
            elif case["kind"] == "load_prepare":
                emit(prepare_load(case))
            else:
                emit(run_load(case))
        except Exception as e:
            emit({"id": case.get("id"), "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"})


# ---- parent side -------------------------------------------------------------------------------

def _ratio(a, b):
    return a / b if a and b else None


def _load_cases(smoke: bool, folder: str) -> list:
    config = specs.TINY_UNET if smoke else specs.SD15_UNET
    return [{"kind": "load_prepare", "id": "load_prepare", "dir": folder, "config": config},
            {"kind": "load", "id": "load", "dir": folder}]


def _measure(cases: list, smoke: bool, timeout: float, blocking: bool, log) -> dict:
    """id -> (result, error). Full size: a fresh process per case; smoke: one process for all (seconds)."""
    groups = [cases] if smoke else [[c] for c in cases]
    results = {}
    for group in groups:
        log("  " + ("; ".join(c["id"] for c in group) if len(group) < 3 else f"{len(group)} smoke cases"))
        got, err = run_worker(sys.executable, "benchmarks.nets_bench",
                              {"cases": group, "smoke": smoke, "blocking": blocking}, timeout * len(group), ROOT)
        for i, c in enumerate(group):
            r = got[i] if i < len(got) else {}
            results[c["id"]] = (r, r.get("error") if r else (err or "no result"))
    return results


def _net_row(case: dict, measured: tuple, ref: tuple) -> dict:
    r, err = measured
    row = {"section": "nets", "id": case["id"], "label": case["label"], "net": case["net"],
           "dtype": case["dtype"], "mode": case["mode"]}
    row.update({k: v for k, v in r.items() if k not in row and k != "error"})
    if err:
        row["error"] = err
    ref_row, ref_err = ref
    if ref_row and "ms" in ref_row:
        row.update(ref_ms=ref_row["ms"], ref_first_s=ref_row["first_s"], ref_peak_rss_mb=ref_row["peak_rss_mb"],
                   ref_finite=ref_row["finite"], ratio_vs_ref=_ratio(row.get("ms"), ref_row["ms"]))
    else:
        row["ref_error"] = (ref_row or {}).get("error") or ref_err or "n/a"
    return row


def _load_row(smoke: bool, prep: tuple, load: tuple) -> dict:
    row = {"section": "load", "label": f"msdiff.load unet {'tiny' if smoke else 'sd15'} fp16 -> float16"}
    for r, err in (prep, load):
        row.update({k: v for k, v in r.items() if k not in ("id", "error")})
        if err:
            row["error"] = err
            return row
    row["load_rss_mb"] = row["peak_rss_mb"] - row["base_rss_mb"]
    row["weight_copies"] = row["load_rss_mb"] / row["weight_mb"] if row["weight_mb"] else None
    return row


def run(smoke: bool, ref_python, timeout: float, nets: bool = True, load: bool = True, select=None,
        blocking: bool = True, log=print) -> tuple:
    """(net rows, load row or None): msdiff cases, the diffusers cases beside them, and the load check."""
    cases = [c for c in specs.net_cases(smoke) if select is None or select(c["id"])] if nets else []
    tmp = tempfile.mkdtemp(prefix="msdiff-bench-load-")
    try:
        extra = _load_cases(smoke, tmp) if load else []
        if not smoke and extra:
            log("  load check: writing a synthetic fp16 safetensors file, then msdiff.load in a fresh process")
        results = _measure(cases + extra, smoke, timeout, blocking, log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    refs = {}
    if ref_python:
        for rc in specs.reference_net_cases(cases):
            log(f"  diffusers {rc['id']}")
            refs[(rc["label"], rc["dtype"])] = reference.net_in(ref_python, rc, smoke, ROOT, timeout)
    missing = (None, "n/a (torch/diffusers not importable; see --reference-python)")
    rows = [_net_row(c, results[c["id"]], refs.get((c["label"], c["dtype"]), missing)) for c in cases]
    load_row = _load_row(smoke, results["load_prepare"], results["load"]) if load else None
    return rows, load_row


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(description="msdiff net benchmark worker")
    p.add_argument("--case", required=True, help="JSON payload: {cases: [...], smoke: bool}")
    _worker(json.loads(p.parse_args(argv).case))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_v", "3")
    sys.exit(_main())
