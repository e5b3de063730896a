"""The Markdown tables of benchmarks/realsize.py results: per case, and the expected seconds per image."""
from .realsize import FAMILIES


def _s(v, digits=1):
    return "-" if v is None else f"{v:,.{digits}f}"


def _mb(v):
    return "-" if v is None else f"{v:,.0f}"


def _status(r: dict) -> str:
    if r.get("stopped"):
        done = "built" if r.get("build_s") is not None else "building"
        if r.get("first_s") is not None:
            done = "after the first call"
        return f"{r['stopped']} ({done}, RSS {_mb(r.get('rss_at_stop_mb') or r.get('hwm_mb'))} MB)"
    if r.get("error"):
        return r["error"][:120]
    return "ok" if r.get("finite", True) else "ok (non-finite output)"


def _load(r: dict) -> str:
    a, b = r.get("load_at_start"), r.get("load_at_end")
    return "-" if a is None else f"{a:.1f}-{b:.1f}"


def render_cases(rows: list) -> str:
    head = ("| case | lib / mode | first call s | step s | peak RSS MB | weights MB | load | result |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lib = "diffusers eager" if r.get("lib") == "reference" else f"msdiff {r.get('mode')}"
        step = _s(r.get("step_s")) + (" (1 call)" if r.get("reps") == 0 else "")
        lines.append(f"| {r['id'].rsplit(' ', 1)[0]} | {lib} | {_s(r.get('first_s'))} | {step} | "
                     f"{_mb(r.get('peak_rss_mb') or r.get('hwm_mb'))} | {_mb(r.get('weight_mb'))} | {_load(r)} | "
                     f"{_status(r)} |")
    return "\n".join(lines)


def per_image(rows: list) -> str:
    """steps x step + compile (first - step, graph) + VAE decode (its first call: one decode per image; msdiff
    decodes in PyNative in both modes), per family at its recipe's default steps, batch 2 (guidance)."""
    ok = {(r["family"], r["net"], r["dtype"], r.get("mode")): r for r in rows
          if r.get("step_s") is not None and not r.get("stopped") and not r.get("error")}
    lines = ["| family, pixels | steps | lib / mode / dtype | denoiser step s | compile s | decode s | "
             "expected s per image |", "|---|---|---|---|---|---|---|"]
    for fam, (steps, pixels) in FAMILIES.items():
        den = "pixart" if fam.startswith("pixart") else ("dit" if fam == "dit" else "unet")
        vae_fam = {"pixart512": "sd15", "pixart1024": "sdxl", "ldm": "dit"}.get(fam, fam)
        for dtype in ("float32", "float16"):
            for mode in ("graph", "pynative", "eager"):
                r = ok.get((fam, den, dtype, mode))
                if r is None:
                    continue
                # the recipes decode in fp32 and, in msdiff, in PyNative (vae.decode is not compiled)
                dec = ok.get((vae_fam, "vae", "float32", "pynative" if mode == "graph" else mode))
                compile_s = max(r["first_s"] - r["step_s"], 0.0) if mode == "graph" else 0.0
                dec_s = dec["first_s"] if dec else None
                total = steps * r["step_s"] + compile_s + (dec_s or 0.0)
                lib = "diffusers" if mode == "eager" else "msdiff"
                lines.append(f"| {fam} {pixels} | {steps} | {lib} {mode} {dtype} | {_s(r['step_s'])} | "
                             f"{_s(compile_s)} | {_s(dec_s)} | {_s(total, 0)}{'' if dec else ' (no decode)'} |")
    return "\n".join(lines)


def render(rows: list) -> str:
    return render_cases(rows) + "\n\n" + per_image(rows)
