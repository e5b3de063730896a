"""Step-by-step fp16 drift of msdiff against diffusers on a recorded pipeline fixture.

    python tools/fp16_trace.py [case ...]        # msdiff's python; runs the diffusers half in /work/refenv
    python tools/fp16_trace.py --list

For each case (a recorded diffusers call of tests/fixtures/pipelines or tests/fixtures/t2i_adapter) the
diffusers half (`--reference`, run by /work/refenv/bin/python) replays the call in fp32 and in fp16 with the
fixture's latents and noise, recording every UNet call (inputs, output), the guided prediction and the latents
after every sampler step; it then reruns the fp16 UNet on the fp32 run's inputs ("isolated" calls). The msdiff
half does the same with msdiff's fp16 and fp32 components. The table lists, per stage, the relative L2 error
against diffusers' fp32 run of: diffusers fp16, msdiff fp16 (and msdiff fp32 as a check).

    python tools/fp16_trace.py --seeds 8 sdxl_inpaint   # the final fp16 errors of both over 8 other draws

`--seeds K` replays each case with K other seeded latents / noise draws (same weights, prompts, images) in both
libraries and lists, per draw, diffusers' and msdiff's fp16 error against diffusers' fp32 output of that draw:
whether one recorded draw's gap is systematic or the luck of the rounding.
"""
import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
REFENV = Path("/work/refenv/bin/python")
CASES = {"sdxl_text_to_image_end": "pipelines", "sdxl_inpaint": "pipelines", "sd_text_to_image": "pipelines",
         "sd_adapter": "t2i_adapter", "sdxl_adapter": "t2i_adapter"}
_RECIPES = {"StableDiffusionPipeline": "text_to_image", "StableDiffusionXLPipeline": "text_to_image",
            "StableDiffusionXLInpaintPipeline": "inpaint", "StableDiffusionAdapterPipeline": "t2i_adapter",
            "StableDiffusionXLAdapterPipeline": "t2i_adapter"}


def case_meta(name: str) -> tuple:
    """(fixture folder, the case's cases.json entry, its arrays)."""
    fix = FIXTURES / CASES[name]
    cases = json.loads((fix / "cases.json").read_text())
    meta = cases["pipelines"][name] if "pipelines" in cases else cases[name]
    return fix, meta, dict(np.load(fix / f"{name}.npz"))


def rel_l2(got, ref) -> float:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


# diffusers half (reference env) -----------------------------------------------------------------------------

def _record_unet(pipe, calls: list) -> list:
    """Hooks recording every UNet call: inputs before the call (the UNet pops the adapter features from its
    list), output after."""
    def numpy(v):
        return v.detach().float().numpy().copy() if hasattr(v, "detach") else np.asarray(v, np.float32)

    def before(module, args, kwargs):
        get = (lambda i, k: args[i] if len(args) > i else kwargs.get(k))
        rec = {"sample": get(0, "sample"), "timestep": get(1, "timestep"), "context": get(2, "encoder_hidden_states")}
        added = kwargs.get("added_cond_kwargs") or {}
        rec.update({k: added[k] for k in ("text_embeds", "time_ids") if k in added})
        rec.update({f"adapter_{j}": f for j, f in enumerate(kwargs.get("down_intrablock_additional_residuals") or ())})
        calls.append({k: numpy(v) for k, v in rec.items()})

    def after(module, args, output):
        calls[-1]["out"] = numpy(output[0] if isinstance(output, tuple) else output.sample)

    return [pipe.unet.register_forward_pre_hook(before, with_kwargs=True), pipe.unet.register_forward_hook(after)]


def _call_args(meta: dict, z: dict, dtype, steps: list) -> dict:
    from fixtures.pipelines import case_kwargs

    def on_step(*a):  # callback_on_step_end(pipe, i, t, kwargs) or the old callback(i, t, latents)
        latents = a[3]["latents"] if len(a) == 4 else a[2]
        steps.append(latents.detach().float().numpy().copy())
        return a[3] if len(a) == 4 else None

    args = case_kwargs(meta, z, dtype)
    if "Adapter" in meta["pipeline_class"] and "XL" not in meta["pipeline_class"]:
        args.update(callback=on_step, callback_steps=1)
    else:
        args["callback_on_step_end"] = on_step
    return args


def reference(name: str, out: Path) -> None:
    """Replay case `name` with diffusers in fp32 and fp16; save every stage to `out` (npz)."""
    import torch
    sys.path.insert(0, str(ROOT / "tools"))
    from fixtures.pipelines import NoiseReplay, load_case_pipeline

    torch.set_num_threads(1)
    fix, meta, z = case_meta(name)
    draws = [z[f"noise_{i}"] for i in range(meta["num_noise"])]
    arrays, pipes, calls_by = {}, {}, {}
    for tag, dtype in (("d32", torch.float32), ("d16", torch.float16)):
        pipe = pipes[tag] = load_case_pipeline(fix, meta, dtype)
        calls, steps = [], []
        handles = _record_unet(pipe, calls)
        with NoiseReplay(draws), torch.no_grad():
            images = pipe(**_call_args(meta, z, dtype, steps)).images
        for h in handles:
            h.remove()
        images = images.float().numpy() if hasattr(images, "float") else np.asarray(images, np.float32)
        arrays[f"{tag}:output"] = images
        for i, c in enumerate(calls):
            arrays.update({f"{tag}:call{i}:{k}": v for k, v in c.items()})
        for i, s in enumerate(steps):
            arrays[f"{tag}:step{i}"] = s
        calls_by[tag] = calls
    print(f"{name}: diffusers fp32 replay vs fixture expected: rel L2 "
          f"{rel_l2(arrays['d32:output'], z['expected']):.1e}", file=sys.stderr)
    unet16 = pipes["d16"].unet
    for i, c in enumerate(calls_by["d32"]):  # the fp16 UNet on the fp32 run's inputs
        args, kwargs = _unet_inputs(c, torch.float16)
        with torch.no_grad():
            o = unet16(*args, **kwargs)[0]
        arrays[f"iso_d16:call{i}:out"] = o.float().numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays.update(_module_outputs(pipes, calls_by["d32"][0]))
    np.savez(out, **arrays)


def _unet_inputs(c: dict, dtype) -> tuple:
    import torch
    t = {k: torch.from_numpy(v).to(dtype) for k, v in c.items() if k != "out"}
    added = {k: t[k] for k in ("text_embeds", "time_ids") if k in t} or None
    feats = [t[f"adapter_{j}"] for j in range(8) if f"adapter_{j}" in t] or None
    return (t["sample"], torch.from_numpy(c["timestep"]), t["context"]), dict(
        added_cond_kwargs=added, down_intrablock_additional_residuals=feats, return_dict=False)


def _module_outputs(pipes: dict, call: dict) -> dict:
    """Every UNet sub-module's (first) output on one call's fp32 inputs, in diffusers fp32 and fp16."""
    import torch
    arrays = {}
    for tag, dtype in (("d32", torch.float32), ("d16", torch.float16)):
        unet, handles = pipes[tag].unet, []
        for name, module in unet.named_modules():
            def hook(m, args, output, name=name):
                o = output[0] if isinstance(output, (tuple, list)) else output
                if hasattr(o, "detach") and o.is_floating_point():
                    arrays[f"blk_{tag}:{name}"] = o.detach().float().numpy().copy()
            handles.append(module.register_forward_hook(hook))
        args, kwargs = _unet_inputs(call, dtype)
        with torch.no_grad():
            unet(*args, **kwargs)
        for h in handles:
            h.remove()
    return arrays


def _draws(meta: dict, z: dict, seed: int) -> tuple:
    """(noise draws, latents or None) of replay `seed`: fresh standard normals shaped like the recorded ones."""
    rng = np.random.default_rng(1000 + seed)
    draws = [rng.standard_normal(z[f"noise_{i}"].shape).astype(np.float32) for i in range(meta["num_noise"])]
    latents = rng.standard_normal(z["latents"].shape).astype(np.float32) if "latents" in z else None
    return draws, latents


def seeds_reference(name: str, k: int, out: Path) -> None:
    """diffusers' fp32 and fp16 outputs of case `name` over k seeded draws (_draws), saved to `out`."""
    import torch
    sys.path.insert(0, str(ROOT / "tools"))
    from fixtures.pipelines import NoiseReplay, load_case_pipeline

    torch.set_num_threads(1)
    fix, meta, z = case_meta(name)
    pipes = {tag: load_case_pipeline(fix, meta, dt) for tag, dt in (("d32", torch.float32), ("d16", torch.float16))}
    arrays = {}
    for s in range(k):
        draws, latents = _draws(meta, z, s)
        zz = dict(z) if latents is None else dict(z, latents=latents)
        for tag, dt in (("d32", torch.float32), ("d16", torch.float16)):
            with NoiseReplay(draws), torch.no_grad():
                images = pipes[tag](**_call_args(meta, zz, dt, [])).images
            arrays[f"s{s}:{tag}"] = images.float().numpy() if hasattr(images, "float") else \
                np.asarray(images, np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)


def seeds(name: str, k: int, work: Path) -> list:
    """[(diffusers fp16, msdiff fp16, msdiff fp32)] rel L2 against diffusers fp32, one row per seeded draw."""
    ref_file = work / f"{name}_seeds{k}.npz"
    subprocess.run([str(REFENV), str(Path(__file__).resolve()), "--seeds-reference", name, "--seeds", str(k),
                    "--out", str(ref_file)], check=True)
    d = dict(np.load(ref_file))
    _, meta, z = case_meta(name)
    rows = []
    for s in range(k):
        draws, latents = _draws(meta, z, s)
        m = {dt: _msdiff_run(name, dt, draws, latents)[2] for dt in ("float16", "float32")}
        ref = d[f"s{s}:d32"]
        rows.append((rel_l2(d[f"s{s}:d16"], ref), rel_l2(m["float16"], ref), rel_l2(m["float32"], ref)))
    return rows


# msdiff half -------------------------------------------------------------------------------------------------

class _Recorder:
    """A UNet stand-in that records every call's inputs and output (PyNative) and forwards attributes."""

    def __init__(self, unet):
        self.unet, self.calls = unet, []

    def __getattr__(self, key):
        return getattr(self.unet, key)

    def __call__(self, *args, **kwargs):
        import inspect
        out = self.unet(*args, **kwargs)
        bound = inspect.signature(self.unet.construct).bind(*args, **kwargs).arguments
        names = {"sample": "sample", "timestep": "timestep", "encoder_hidden_states": "context",
                 "text_embeds": "text_embeds", "time_ids": "time_ids"}
        rec = {short: bound.get(k) for k, short in names.items()}
        rec["out"] = out
        rec.update({f"adapter_{j}": f for j, f in enumerate(bound.get("down_intrablock_additional_residuals") or ())})
        self.calls.append({k: v.asnumpy().astype(np.float32) for k, v in rec.items() if v is not None})
        return out


def _msdiff_run(name: str, dtype: str, noise=None, latents=None) -> tuple:
    import PIL.Image
    import msdiff
    from msdiff import recipes
    fix, meta, z = case_meta(name)
    comps = msdiff.load_pipeline(fix / meta["folder"], dtype=dtype)
    rec = _Recorder(comps.unet)
    comps = dataclasses.replace(comps, unet=rec)
    args = {k: tuple(v) if isinstance(v, list) and k not in ("prompt", "negative_prompt") else v
            for k, v in meta["args"].items()}
    if "latents" in z:
        args["latents"] = z["latents"] if latents is None else latents
    if "image" in z:
        args["image"] = PIL.Image.fromarray(z["image"]) if z["image"].dtype == np.uint8 else z["image"]
    if "mask_image" in z:
        args["mask_image"] = PIL.Image.fromarray(z["mask_image"])
    if meta.get("adapter"):
        args["adapter"] = msdiff.load(fix / meta["adapter"], dtype=dtype)
    if meta.get("scheduler"):
        args["sampler"] = meta["scheduler"]
    args["noise"] = [z[f"noise_{i}"] for i in range(meta["num_noise"])] if noise is None else noise
    steps = []
    args["callback"] = lambda i, x: steps.append(x.asnumpy().astype(np.float32))
    output = np.asarray(getattr(recipes, _RECIPES[meta["pipeline_class"]])(comps, mode="pynative", **args))
    return rec, steps, output


def _isolated(unet, call: dict) -> np.ndarray:
    """msdiff's UNet on one recorded diffusers fp32 call's inputs."""
    from mindspore import Tensor
    t = {k: Tensor(v) for k, v in call.items() if k != "out"}
    feats = tuple(t[f"adapter_{j}"] for j in range(8) if f"adapter_{j}" in t)
    return unet(t["sample"], t["timestep"].reshape(-1)[:1].reshape(()), t["context"], t.get("text_embeds"),
                t.get("time_ids"), down_intrablock_additional_residuals=feats or None).asnumpy().astype(np.float32)


def _guided(out: np.ndarray, g: float, dtype) -> np.ndarray:
    """Classifier-free guidance of a [uncond; text] UNet output, computed in `dtype` (diffusers: the net's)."""
    o = out.astype(dtype)
    u, c = np.split(o, 2)
    return (u + dtype(g) * (c - u)).astype(np.float32)


def trace(name: str, work: Path, reuse: bool = False) -> tuple:
    """(rows, modules): rows (stage, diffusers fp16, msdiff fp16, msdiff fp32) of rel L2 against diffusers fp32;
    modules (UNet sub-module name, diffusers fp16, msdiff fp16) on the first call's fp32 inputs."""
    work.mkdir(parents=True, exist_ok=True)
    ref_file = work / f"{name}_diffusers.npz"
    if not (reuse and ref_file.is_file()):
        subprocess.run([str(REFENV), str(Path(__file__).resolve()), "--reference", name, "--out", str(ref_file)],
                       check=True)
    d = dict(np.load(ref_file))
    _, meta, _ = case_meta(name)
    g = float(meta["args"].get("guidance_scale", 1.0))
    runs = {dt: _msdiff_run(name, dt) for dt in ("float16", "float32")}
    rows = []
    n_calls = sum(1 for k in d if k.startswith("d32:call") and k.endswith(":out"))

    def row(stage, ref_key, d16, m16, m32):
        rows.append((stage, rel_l2(d16, d[ref_key]), rel_l2(m16, d[ref_key]), rel_l2(m32, d[ref_key])))

    m16, m32 = runs["float16"][0].calls, runs["float32"][0].calls
    for k in ("context", "text_embeds"):
        if f"d32:call0:{k}" in d:
            row(f"text encoder ({k})", f"d32:call0:{k}", d[f"d16:call0:{k}"], m16[0][k], m32[0][k])
    for j in range(8):
        if f"d32:call0:adapter_{j}" in d:
            row(f"adapter feature {j}", f"d32:call0:adapter_{j}", d[f"d16:call0:adapter_{j}"],
                m16[0][f"adapter_{j}"], m32[0][f"adapter_{j}"])
    iso16 = runs["float16"][0].unet
    iso32 = runs["float32"][0].unet
    for i in range(n_calls):
        ref = {k.split(":")[-1]: v for k, v in d.items() if k.startswith(f"d32:call{i}:")}
        row(f"UNet call {i}: input sample", f"d32:call{i}:sample", d[f"d16:call{i}:sample"], m16[i]["sample"],
            m32[i]["sample"])
        row(f"UNet call {i}: output (own trajectory)", f"d32:call{i}:out", d[f"d16:call{i}:out"], m16[i]["out"],
            m32[i]["out"])
        row(f"UNet call {i}: output (isolated, fp32 inputs)", f"d32:call{i}:out", d[f"iso_d16:call{i}:out"],
            _isolated(iso16, ref), _isolated(iso32, ref))
        if g > 1.0:
            d[f"d32:guided{i}"] = _guided(d[f"d32:call{i}:out"], g, np.float32)
            row(f"UNet call {i}: guided eps (own trajectory)", f"d32:guided{i}",
                _guided(d[f"d16:call{i}:out"], g, np.float16), _guided(m16[i]["out"], g, np.float32),
                _guided(m32[i]["out"], g, np.float32))
        if f"d32:step{i}" in d and rel_l2(runs["float32"][1][i], d[f"d32:step{i}"]) < 1e-4:  # PNDM: layouts differ
            row(f"latents after step {i}", f"d32:step{i}", d[f"d16:step{i}"], runs["float16"][1][i],
                runs["float32"][1][i])
    row("pipeline output", "d32:output", d["d16:output"], runs["float16"][2], runs["float32"][2])
    modules = []
    for mod, out in _msdiff_module_outputs(iso16, {k.split(":")[-1]: v for k, v in d.items()
                                                   if k.startswith("d32:call0:")}).items():
        ref = d.get(f"blk_d32:{mod}")
        if ref is not None and ref.shape == out.shape:
            modules.append((mod or "<unet>", rel_l2(d[f"blk_d16:{mod}"], ref), rel_l2(out, ref)))
    return rows, modules


def _msdiff_module_outputs(unet, call: dict) -> dict:
    """Every msdiff UNet sub-cell's (first) output on one recorded call's inputs (PyNative hooks)."""
    outs, handles = {}, []
    for name, cell in unet.cells_and_names():
        def hook(c, args, output, name=name):
            o = output[0] if isinstance(output, (tuple, list)) else output
            if hasattr(o, "asnumpy") and name not in outs:
                outs[name] = o.asnumpy().astype(np.float32)
        handles.append(cell.register_forward_hook(hook))
    try:
        _isolated(unet, call)
    finally:
        for h in handles:
            h.remove()
    return outs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="*", default=None)
    p.add_argument("--reference", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=Path("/tmp/fp16_trace"))
    p.add_argument("--list", action="store_true")
    p.add_argument("--reuse", action="store_true", help="reuse the diffusers half saved under --out")
    p.add_argument("--modules", action="store_true", help="also list every UNet sub-module on the first call")
    p.add_argument("--seeds", type=int, default=0, help="compare the final fp16 errors over this many other draws")
    p.add_argument("--seeds-reference", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.list:
        print("\n".join(CASES))
        return 0
    if args.reference:
        reference(args.reference, args.out)
        return 0
    if args.seeds_reference:
        seeds_reference(args.seeds_reference, args.seeds, args.out)
        return 0
    for name in args.cases or list(CASES):
        if name not in CASES:
            p.error(f"unknown case {name!r}; known: {list(CASES)}")
        if args.seeds:
            print(f"\n## {name}: final output over {args.seeds} other draws (rel L2 against diffusers fp32)\n")
            print("| draw | diffusers fp16 | msdiff fp16 | msdiff fp32 |")
            print("|---|---|---|---|")
            rows = seeds(name, args.seeds, args.out)
            for s, (a, b, c) in enumerate(rows):
                print(f"| {s} | {a:.2e} | {b:.2e} | {c:.1e} |", flush=True)
            a = np.asarray(rows)
            print(f"| mean | {a[:, 0].mean():.2e} | {a[:, 1].mean():.2e} | {a[:, 2].mean():.1e} |")
            print(f"\nmsdiff fp16 below diffusers fp16 in {(a[:, 1] < a[:, 0]).sum()} of {len(rows)} draws")
            continue
        print(f"\n## {name} (rel L2 against diffusers fp32)\n")
        print("| stage | diffusers fp16 | msdiff fp16 | msdiff fp32 |")
        print("|---|---|---|---|")
        rows, modules = trace(name, args.out, args.reuse)
        for stage, a, b, c in rows:
            print(f"| {stage} | {a:.2e} | {b:.2e} | {c:.1e} |", flush=True)
        if args.modules:
            print(f"\n### {name}: UNet sub-modules, first call, fp32 inputs\n")
            print("| module | diffusers fp16 | msdiff fp16 |")
            print("|---|---|---|")
            for mod, a, b in modules:
                print(f"| {mod} | {a:.2e} | {b:.2e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
