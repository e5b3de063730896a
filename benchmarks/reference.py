"""PyTorch / diffusers side of the suite: the same op and net cases, eager mode, in this or another interpreter.

Imports torch and diffusers only inside functions, so `import benchmarks.reference` works everywhere;
`python -m benchmarks.reference --case JSON` is the worker the suite starts with `--reference-python`.
"""
import argparse
import json
import sys

from ._timing import current_rss_mb, emit, gflops, peak_rss_mb, run_worker, time_call
from .specs import TEXT_TOKENS


def importable() -> bool:
    """Whether torch and diffusers import in this interpreter."""
    try:
        import diffusers  # noqa: F401
        import torch  # noqa: F401
    except Exception:
        return False
    return True


def versions() -> dict:
    """torch / diffusers versions and torch's thread count in this interpreter."""
    import diffusers
    import torch

    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "torch_threads": torch.get_num_threads()}


def _dtype(name: str):
    import torch

    return {"float32": torch.float32, "float16": torch.float16}[name]


def _op_fn(case: dict):
    import torch
    import torch.nn.functional as F
    from diffusers.models.downsampling import downsample_2d
    from diffusers.models.upsampling import upsample_2d

    g = torch.Generator().manual_seed(0)
    dtype, shape, op = _dtype(case["dtype"]), tuple(case["shape"]), case["op"]

    def rand(s, scale=1.0):
        return (torch.randn(s, generator=g) * scale).to(dtype)
    if op == "attention":
        q, k, v = rand(shape), rand(shape), rand(shape)
        return lambda: F.scaled_dot_product_attention(q, k, v)
    if op == "group_norm":
        x, w, b = rand(shape), rand(shape[1:2], 0.1) + 1, rand(shape[1:2], 0.1)
        return lambda: F.group_norm(x, case["groups"], w, b, 1e-5)
    if op == "upsample_fir":
        x = rand(shape)
        return lambda: upsample_2d(x, kernel=case["kernel"], factor=case["factor"])
    if op == "downsample_fir":
        x = rand(shape)
        return lambda: downsample_2d(x, kernel=case["kernel"], factor=case["factor"])
    if op == "conv2d":
        ks = case["kernel_size"]
        x = rand(shape)
        w = rand((case["out"], shape[1], ks, ks), (shape[1] * ks * ks) ** -0.5)
        b = rand((case["out"],), 0.1)
        return lambda: F.conv2d(x, w, b, padding=case["padding"])
    raise ValueError(f"unknown op case {op!r}")


def run_ops(cases: list, smoke: bool) -> list:
    """Eager torch timing of each op case: {label, dtype, ref_ms, ref_gflops} or an error."""
    import torch

    min_time, max_reps = (0.0, 1) if smoke else (1.0, 10)
    out = []
    with torch.inference_mode():
        for case in cases:
            row = {"label": case["label"], "dtype": case["dtype"]}
            try:
                t = time_call(_op_fn(case), min_time, max_reps)
                row.update(ref_ms=t["ms"], ref_gflops=gflops(case["flops"], t["ms"]))
            except Exception as e:
                row["ref_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            out.append(row)
    return out


def _build(case: dict):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(0)
    cls = UNet2DConditionModel if case["net"] == "unet" else AutoencoderKL
    return cls.from_config(case["config"]).to(_dtype(case["dtype"])).eval()


def run_net(case: dict, smoke: bool) -> dict:
    """One eager diffusers net case in this process: build (random init), first call, steady ms, peak RSS."""
    import time

    import torch

    base = current_rss_mb()
    t0 = time.perf_counter()
    net = _build(case)
    build_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    dtype, n, b = _dtype(case["dtype"]), case["latent"], case["batch"]
    if case["net"] == "unet":
        x = torch.randn((b, 4, n, n), generator=g).to(dtype)
        ctx = torch.randn((b, TEXT_TOKENS, case["config"]["cross_attention_dim"]), generator=g).to(dtype)
        t = torch.full((b,), 999.0)

        def call():
            return net(x, t, ctx, return_dict=False)[0]
    else:
        z = torch.randn((b, case["config"]["latent_channels"], n, n), generator=g).to(dtype)

        def call():
            return net.decode(z, return_dict=False)[0]
    min_time, max_reps = (0.0, 1) if smoke else (20.0, 3)
    with torch.inference_mode():
        res = time_call(call, min_time, max_reps)
        finite = bool(torch.isfinite(call()).all())
    return {"id": case["id"], "label": case["label"], "dtype": case["dtype"], "build_s": build_s,
            "first_s": res["first_s"], "ms": res["ms"], "reps": res["reps"], "finite": finite,
            "base_rss_mb": base, "peak_rss_mb": peak_rss_mb()}


# ---- parent side -------------------------------------------------------------------------------

def resolve_python(reference_python, disabled: bool):
    """The interpreter for the reference side: the given one, else this one if torch+diffusers import, else None."""
    if disabled:
        return None
    if reference_python:
        return reference_python
    return sys.executable if importable() else None


def ops_in(python: str, cases: list, smoke: bool, cwd: str, timeout: float) -> tuple:
    """Reference op rows from `python` (in this process when it is this interpreter); (rows, error)."""
    if python == sys.executable and importable():
        return run_ops(cases, smoke), None
    return run_worker(python, "benchmarks.reference", {"kind": "ops", "cases": cases, "smoke": smoke}, timeout, cwd)


def net_in(python: str, case: dict, smoke: bool, cwd: str, timeout: float) -> tuple:
    """One reference net case in a fresh `python` process (peak RSS per case); (row or None, error)."""
    results, err = run_worker(python, "benchmarks.reference", {"kind": "net", "case": case, "smoke": smoke},
                              timeout, cwd)
    return (results[0] if results else None), err


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(description="reference (torch/diffusers) benchmark worker")
    p.add_argument("--case", required=True, help="JSON payload: {kind: ops|net|versions, ...}")
    payload = json.loads(p.parse_args(argv).case)
    if payload["kind"] == "versions":
        emit(versions())
    elif payload["kind"] == "ops":
        for row in run_ops(payload["cases"], payload["smoke"]):
            emit(row)
    else:
        emit(run_net(payload["case"], payload["smoke"]))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
