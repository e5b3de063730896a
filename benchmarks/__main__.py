"""`python -m benchmarks [--smoke] [--only ops,nets,load,realsize,profile,graph_memory] [--json out.json]
[--reference-python PY]` (default sections: ops, nets, load)."""
import argparse
import datetime
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shlex
import subprocess
import sys

from . import nets_bench, reference, report, specs
from ._timing import run_worker


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def _version(dist: str):
    try:
        return importlib.metadata.version(dist)
    except Exception:
        return None


def _meta(args, ref_python) -> dict:
    ref = "n/a (torch/diffusers not importable; pass --reference-python)"
    if ref_python:
        got, err = run_worker(ref_python, "benchmarks.reference", {"kind": "versions"}, 300, nets_bench.ROOT)
        ref = (f"{ref_python}: torch {got[0]['torch']}, diffusers {got[0]['diffusers']}, "
               f"{got[0]['torch_threads']} threads") if got else f"{ref_python}: unusable ({err})"
        if not got:
            ref_python = None
    command = "python -m benchmarks " + shlex.join(sys.argv[1:] if args.argv is None else args.argv)
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.node()}, {os.cpu_count()} cpus, {_cpu_model()}",
            "loadavg": " ".join(f"{x:.1f}" for x in os.getloadavg()), "python": platform.python_version(),
            "mindspore": _version("mindspore"), "reference": ref, "smoke": args.smoke,
            "launch_blocking": not args.async_launch, "command": command}, ref_python


def _from_ops_bench(row: dict) -> dict:
    """An ops_bench row in this suite's op-row schema where its keys allow, else unchanged."""
    if not {"op", "shape", "dtype", "ms"} <= set(row):
        return row
    out = {"section": "ops", "source": "benchmarks.ops_bench", "op": row["op"], "label": f"{row['op']} {row['shape']}",
           "dtype": row["dtype"], "msdiff_ms": row["ms"], "msdiff_gflops": row.get("gflops"),
           "native_ms": row.get("native_ms"), "native_gflops": row.get("native_gflops"), "ref_error": "n/a"}
    out.update({k: v for k, v in row.items() if k not in ("op", "shape", "dtype", "ms", "gflops")})
    return out


def _ops_bench_rows(smoke: bool, native: bool, log):
    """Rows of benchmarks/ops_bench.py (the ops helper's conv2d microbenchmarks), or None where it is absent."""
    if importlib.util.find_spec("benchmarks.ops_bench") is None:
        return None
    log("  ops_bench.run" + ("" if native else " (native=False)"))
    try:
        run = importlib.import_module("benchmarks.ops_bench").run
        return [_from_ops_bench(r) for r in (run(smoke) if native else run(smoke, native=False))]
    except Exception as e:
        return [{"error": f"ops_bench.run failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}"}]


def _ops(args, ref_python, selected, log) -> tuple:
    import mindspore as ms

    from . import ops_extra

    if not args.async_launch:
        ms.runtime.launch_blocking()
    bench_rows = _ops_bench_rows(args.smoke, not args.ops_bench_no_native, log)
    cases = [c for c in specs.op_cases(args.smoke) if selected(f"{c['label']} {c['dtype']}")]
    rows = ops_extra.run(cases, args.smoke, log)
    if ref_python and cases:
        log("  torch ops")
        refs, err = reference.ops_in(ref_python, cases, args.smoke, nets_bench.ROOT, args.case_timeout)
        by_key = {(r["label"], r["dtype"]): r for r in refs}
        for row in rows:
            ref = by_key.get((row["label"], row["dtype"]), {"ref_error": err or "no result"})
            row.update({k: v for k, v in ref.items() if k.startswith("ref_")})
    else:
        for row in rows:
            row["ref_error"] = "n/a"
    return bench_rows, rows


def _graph_memory(smoke: bool, timeout: float, log) -> list:
    """benchmarks/graph_memory.py's PixArt-XL-depth forward (28 blocks, 4,096 tokens; smoke: 2 blocks, 64 tokens),
    PyNative then graph, one process each: its JSON lines (peak RSS per process)."""
    rows = []
    for mode in specs.MODES:
        cmd = [sys.executable, "-m", "benchmarks.graph_memory", mode] + (["2", "16", "16"] if smoke else
                                                                          ["28", "128", "128"])
        log("  graph_memory " + " ".join(cmd[3:]))
        try:
            done = subprocess.run(cmd, cwd=nets_bench.ROOT, capture_output=True, text=True, timeout=timeout)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            rows.append(json.loads(lines[-1]) if lines else {"mode": mode, "error": (done.stderr or "no output")
                                                             .strip().splitlines()[-1][:300]})
        except subprocess.TimeoutExpired:
            rows.append({"mode": mode, "error": f"timed out after {timeout:.0f} s"})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--smoke", action="store_true", help="tiny sizes; seconds")
    p.add_argument("--only", default="ops,nets,load",
                   help="comma list of sections: ops, nets, load, realsize, profile, graph_memory")
    p.add_argument("--filter", default=None, help="run only op/net cases whose id matches this regular expression")
    p.add_argument("--json", default=None, help="write the results here as JSON")
    p.add_argument("--reference-python", default=None,
                   help="interpreter with torch+diffusers for the reference side (default: this one if they import)")
    p.add_argument("--no-reference", action="store_true", help="skip the torch/diffusers side")
    p.add_argument("--case-timeout", type=float, default=1800.0, help="seconds per net case (default 1800)")
    p.add_argument("--ops-bench-no-native", action="store_true",
                   help="skip MindSpore's native Conv2D in ops_bench (~1 GFLOP/s: minutes on a loaded machine)")
    p.add_argument("--async-launch", action="store_true",
                   help="keep MindSpore's asynchronous PyNative launch (default: launch_blocking, faster on CPU)")
    args = p.parse_args(argv)
    args.argv = argv
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = sections - {"ops", "nets", "load", "realsize", "profile", "graph_memory"}
    if unknown:
        p.error(f"unknown section(s) in --only: {sorted(unknown)}")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    def selected(case_id: str) -> bool:
        return args.filter is None or re.search(args.filter, case_id) is not None

    ref_python = reference.resolve_python(args.reference_python, args.no_reference)
    meta, ref_python = _meta(args, ref_python)
    result = {"meta": meta}
    if "ops" in sections:
        log("ops:")
        bench_rows, rows = _ops(args, ref_python, selected, log)
        if bench_rows is not None:
            result["ops_bench"] = [r for r in bench_rows if r.get("source") != "benchmarks.ops_bench"]
            rows = [r for r in bench_rows if r.get("source") == "benchmarks.ops_bench"] + rows
        result["ops"] = rows
    if sections & {"nets", "load"}:
        log("nets:")
        result["nets"], result["load"] = nets_bench.run(
            args.smoke, ref_python, args.case_timeout, nets="nets" in sections, load="load" in sections,
            select=selected, blocking=not args.async_launch, log=log)
    extra = []
    if "realsize" in sections:  # each case under the machine-wide memory lock, its own RSS cap and timeout
        from . import realsize, realsize_report
        log("realsize:")
        lock = None if args.smoke or not os.path.exists(realsize.DEFAULT_LOCK) else realsize.DEFAULT_LOCK
        result["realsize"] = realsize.run(args.smoke, ref_python, timeout=args.case_timeout, select=selected,
                                          lock_path=lock, log=log)
        extra.append("== real sizes ==\n" + realsize_report.render(result["realsize"]))
    if "profile" in sections:
        from . import profile
        log("profile:")
        result["profile"] = profile.run(8 if args.smoke else 32, ref_python=ref_python, smoke=args.smoke,
                                        timeout=args.case_timeout, log=log)
        extra.append("== profile: SD-1.5 UNet step by op kind ==\n" + profile.render(result["profile"]["results"]))
    if "graph_memory" in sections:
        log("graph_memory:")
        result["graph_memory"] = _graph_memory(args.smoke, args.case_timeout, log)
        extra.append("== graph-mode memory (PixArt-XL depth) ==\n" + "\n".join(json.dumps(r)
                                                                             for r in result["graph_memory"]))
    result["meta"]["loadavg_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    result["targets"] = report.targets(result)
    print(report.render(result))
    for block in extra:
        print("\n" + block)
    if args.json:
        report.write_json(result, args.json)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
