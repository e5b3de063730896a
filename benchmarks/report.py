"""Tables and JSON for benchmark results, and the project's speed / memory targets evaluated on them."""
import json


def _fmt(v, digits: int = 1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1e5 else f"{v:.3g}"
    return str(v)


def table(headers: list, rows: list) -> str:
    """Fixed-width text table; first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for k, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _ratio(a, b):
    return a / b if a and b else None


def ops_table(rows: list) -> str:
    """msdiff op vs MindSpore's native op vs torch, ms per call and GFLOP/s."""
    out = []
    for r in rows:
        native = _fmt(r.get("native_ms"), 2) if r.get("native_ms") else "err" if r.get("native_error") else "n/a"
        ref = _fmt(r.get("ref_ms"), 2) if r.get("ref_ms") else "n/a"
        out.append([r["label"], r["dtype"].replace("float", "fp"), _fmt(r.get("msdiff_ms"), 2),
                    _fmt(r.get("msdiff_gflops")), native, _fmt(r.get("native_gflops")),
                    _fmt(_ratio(r.get("msdiff_ms"), r.get("native_ms")), 2), ref, _fmt(r.get("ref_gflops")),
                    _fmt(_ratio(r.get("msdiff_ms"), r.get("ref_ms")), 2)])
    return table(["op", "dtype", "msdiff ms", "GFLOP/s", "native ms", "GFLOP/s", "msdiff/native", "torch ms",
                  "GFLOP/s", "msdiff/torch"], out)


def generic_table(rows: list) -> str:
    """Rows of unknown schema (ops_bench): every key that appears, in first-seen order."""
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    return table(keys, [[_fmt(r.get(k), 3) if isinstance(r.get(k), float) else _fmt(r.get(k)) for k in keys]
                        for r in rows])


def nets_table(rows: list) -> str:
    """Net cases: msdiff steady ms, first call, compile, peak RSS; diffusers eager ms and the ratio."""
    out = []
    for r in rows:
        err = r.get("error")
        out.append([r["label"], r["dtype"].replace("float", "fp"), r["mode"],
                    "ERROR" if err else _fmt(r.get("ms"), 0), _fmt(r.get("first_s"), 1),
                    _fmt(r.get("compile_s"), 1), _fmt(r.get("built_rss_mb"), 0), _fmt(r.get("peak_rss_mb"), 0),
                    _fmt(r.get("finite")) if not err else "-", _fmt(r.get("ref_ms"), 0),
                    _fmt(r.get("ref_peak_rss_mb"), 0), _fmt(r.get("ratio_vs_ref"), 2)])
    text = table(["net case", "dtype", "mode", "msdiff ms", "first s", "compile s", "built RSS MB", "peak RSS MB",
                  "finite", "diffusers ms", "RSS MB", "msdiff/diffusers"], out)
    notes = [f"  {r['id']}: {r['error']}" for r in rows if r.get("error")]
    notes += sorted({f"  diffusers: {r['ref_error']}" for r in rows if r.get("ref_error")})
    return text + ("\n" + "\n".join(notes) if notes else "")


def load_table(row: dict) -> str:
    """The loading-memory check."""
    if row.get("error"):
        return f"{row['label']}: ERROR {row['error']}"
    return table(["load case", "weights MB", "RSS before MB", "peak RSS MB", "peak - before MB", "x weights",
                  "load s"],
                 [[row["label"], _fmt(row["weight_mb"], 0), _fmt(row["base_rss_mb"], 0),
                   _fmt(row["peak_rss_mb"], 0), _fmt(row["load_rss_mb"], 0), _fmt(row["weight_copies"], 2),
                   _fmt(row["load_s"], 1)]])


def _find(rows, **match):
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def targets(result: dict) -> list:
    """The targets on this run: {target, measured, pass (True/False/None = not measured), note}."""
    ops, nets, load = result.get("ops", []), result.get("nets", []), result.get("load")
    smoke = result["meta"]["smoke"]
    out = []

    def add(name, value, ok, note):
        out.append({"target": name, "measured": value, "pass": ok, "note": note + (" [smoke sizes]" if smoke else "")})
    convs = [r for r in ops if r.get("op") == "conv2d" and r.get("dtype") == "float32" and r.get("msdiff_gflops")
             and (r.get("source") == "benchmarks.specs" or r["label"] == "conv2d sd 320@64 3x3")]
    g = max(r["msdiff_gflops"] for r in convs) if convs else None
    add("conv2d 1x320x64x64 3x3 fp32 >= 150 GFLOP/s", None if g is None else f"{g:.0f} GFLOP/s",
        None if g is None else g >= 150,
        f"best of {len(convs)}: " + ", ".join(f"{r['label']} {r['msdiff_gflops']:.0f}" for r in convs)
        if convs else "not measured")
    gn = _find(ops, source="benchmarks.specs", op="group_norm", dtype="float16")
    r = gn and _ratio(gn.get("msdiff_ms"), gn.get("native_ms"))
    add("group_norm fp32-upcast on fp16 <= 1.3x native fp16", None if r is None else f"{r:.2f}x",
        None if r is None else r <= 1.3, gn["label"] if gn else "not measured")
    label = "unet sd15 step 64x64 b2" if not smoke else "unet tiny step 8x8 b2"
    steps = [n for n in nets if n["label"] == label and n["dtype"] == "float32" and n.get("ms")]
    best = min(steps, key=lambda n: n["ms"]) if steps else None
    ratio = best and best.get("ratio_vs_ref")
    add("SD-1.5 UNet step 64x64 b2 fp32 <= 2x diffusers", None if ratio is None else f"{ratio:.2f}x",
        None if ratio is None else ratio <= 2.0,
        f"best msdiff mode: {best['mode']} {best['ms']:.0f} ms" if best else "not measured"
        + ("" if ratio or not best else "; no diffusers timing"))
    graph = _find(nets, label=label, dtype="float32", mode="graph")
    c = graph and graph.get("compile_s")
    add("graph compile of that UNet <= 60 s", None if c is None else f"{c:.1f} s", None if c is None else c <= 60,
        "first call minus steady call, fp32" if graph else "not measured")
    w = load and load.get("weight_copies")
    add("fp16 UNet load peak RSS <= 2x weight bytes", None if w is None else f"{w:.2f}x",
        None if w is None else w <= 2.0, "peak RSS minus RSS before msdiff.load, over the safetensors bytes")
    out += speed_targets(ops, nets, smoke)
    return out


def speed_targets(ops: list, nets: list, smoke: bool) -> list:
    """The speed targets against PyTorch diffusers on the same run: each net case's time ratio by mode, the
    64x64 graph peak RSS ratio, and the hot ops against torch (conv2d by GFLOP/s, attention and group_norm by time)."""
    add_to = []

    def add(name, value, limit, note, higher=False):
        ok = None if value is None else (value >= limit if higher else value <= limit)
        add_to.append({"target": name, "measured": None if value is None else f"{value:.2f}x", "pass": ok,
                       "note": note + (" [smoke sizes]" if smoke else "")})
    unet = "unet tiny step {0}x{0} b2" if smoke else "unet sd15 step {0}x{0} b2"
    for latent in ((8,) if smoke else (32, 64)):
        for mode, limit in (("graph", 1.0), ("pynative", 1.5)):
            n = _find(nets, label=unet.format(latent), dtype="float32", mode=mode)
            add(f"SD-1.5 UNet step {latent}x{latent} b2 fp32 {mode} <= {limit}x diffusers",
                n and n.get("ratio_vs_ref"), limit,
                f"{n['ms']:.0f} vs {n['ref_ms']:.0f} ms" if n and n.get("ref_ms") else "not measured")
    vae = [n for n in nets if n["label"].startswith("vae") and "512x512" in n["label"] and n["dtype"] == "float32"
           and n.get("ratio_vs_ref")]
    best = min(vae, key=lambda n: n["ratio_vs_ref"]) if vae else None
    add("SD-1.5 VAE decode 512x512 fp32 <= 1.0x diffusers", best and best["ratio_vs_ref"], 1.0,
        f"best msdiff mode: {best['mode']} {best['ms']:.0f} vs {best['ref_ms']:.0f} ms" if best else "not measured")
    g = _find(nets, label=unet.format(8 if smoke else 64), dtype="float32", mode="graph")
    r = g and _ratio(g.get("peak_rss_mb"), g.get("ref_peak_rss_mb"))
    add("graph peak RSS of the 64x64 UNet step <= 1.5x diffusers'", r, 1.5,
        f"{g['peak_rss_mb']:.0f} vs {g['ref_peak_rss_mb']:.0f} MB" if r else "not measured")
    conv = _find(ops, source="benchmarks.specs", op="conv2d", dtype="float32")
    r = conv and _ratio(conv.get("ref_ms"), conv.get("msdiff_ms"))
    add("conv2d 1x320x64x64 3x3 fp32 >= 0.9x torch's GFLOP/s", r, 0.9, conv["label"] if r else "not measured",
        higher=True)
    for op, limit in (("attention", 1.2), ("group_norm", 2.0)):
        row = _find(ops, source="benchmarks.specs", op=op, dtype="float32")
        r = row and _ratio(row.get("msdiff_ms"), row.get("ref_ms"))
        add(f"{op} fp32 <= {limit}x torch", r, limit,
            f"{row['label']}: {row['msdiff_ms']:.2f} vs {row['ref_ms']:.2f} ms" if r else "not measured")
    return add_to


def targets_table(rows: list) -> str:
    """Targets with PASS / FAIL / n/a."""
    status = {True: "PASS", False: "FAIL", None: "n/a"}
    return table(["target", "measured", "result", "note"],
                 [[t["target"], _fmt(t["measured"]), status[t["pass"]], t["note"]] for t in rows])


def render(result: dict) -> str:
    """The whole printed report."""
    meta = result["meta"]
    parts = [f"msdiff benchmarks  {meta['date']}  {meta['machine']}  load avg {meta['loadavg']}",
             f"mindspore {meta.get('mindspore')}, reference: {meta.get('reference')}"]
    if result.get("ops"):
        parts += ["", "== ops: msdiff vs MindSpore native vs torch (conv2d rows from ops_bench: no torch column) ==",
                  ops_table(result["ops"])]
    if result.get("ops_bench"):
        parts += ["", "== ops_bench rows in another format ==", generic_table(result["ops_bench"])]
    if result.get("nets"):
        parts += ["", "== nets: msdiff (fresh process per case) vs diffusers eager ==", nets_table(result["nets"])]
    if result.get("load"):
        parts += ["", "== loading memory ==", load_table(result["load"])]
    parts += ["", "== targets ==", targets_table(result["targets"])]
    return "\n".join(parts)


def write_json(result: dict, path) -> None:
    """The full result dict as JSON."""
    with open(path, "w") as f:
        json.dump(result, f, indent=2, default=str)


def merge(results: list) -> dict:
    """One result from several runs (e.g. `--filter`ed parts of a full run); later rows win on the same id/label."""
    meta = dict(results[0]["meta"])
    meta["merged_from"] = [r["meta"]["command"] + f"  ({r['meta']['date']}, load avg {r['meta']['loadavg']})"
                           for r in results]
    merged = {"meta": meta}
    for key, ident in (("ops", ("label", "dtype", "source")), ("nets", ("id",))):
        rows = {}
        for r in results:
            for row in r.get(key) or []:
                rows[tuple(row.get(k) for k in ident)] = row
        merged[key] = list(rows.values())
    loads = [r["load"] for r in results if r.get("load")]
    merged["load"] = loads[-1] if loads else None
    merged["targets"] = targets(merged)
    return merged


def _main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m benchmarks.report",
                                description="print (and merge) JSON results of python -m benchmarks")
    p.add_argument("results", nargs="+", help="JSON files written with --json")
    p.add_argument("--json", default=None, help="write the merged result here")
    args = p.parse_args(argv)
    results = []
    for path in args.results:
        with open(path) as f:
            results.append(json.load(f))
    merged = merge(results)
    print(render(merged))
    if len(results) > 1:
        print("\nmerged from:\n" + "\n".join(f"  {c}" for c in merged["meta"]["merged_from"]))
    if args.json:
        write_json(merged, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
