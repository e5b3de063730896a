"""The measured support matrix: every net / recipe with a diffusers fixture, in four modes.

Each fixture area has its rows beside it: `tools/support/<area>.py` defines `rows(fix) -> [Row, ...]`, where
`fix` is `tests/fixtures/<AREA>` (AREA defaults to the module name; "" for rows that need no fixture). Adding a
family means adding that one module; this file finds it. `python -m tools.support` (or `msdiff support` inside a
checkout) runs each row in PyNative and graph mode (`mindspore.jit`), fp16 and fp32, compares with the diffusers
fp32 output stored in the fixtures, and writes docs/SUPPORT.md. A cell is ✅ with the measured relative L2 error
when it is within the threshold (fp32 1e-5, fp16 5e-3), else ❌ with the reason; a row whose run returns
(got, reference, diffusers fp16 output) triples also shows diffusers' own fp16 error, and its fp16 cell is ✅ when
msdiff's error is no worse than that. A row whose fp16 run returns `Seeds` (fp16_seeds: one result per seed) shows
the medians of both errors over the seeds and applies that rule to them.
"""
import argparse
import importlib
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

MODES = (("pynative", "float16"), ("pynative", "float32"), ("graph", "float16"), ("graph", "float32"))
HEADERS = ("PyNative FP16", "PyNative FP32", "Graph FP16", "Graph FP32")
THRESHOLD = {"float32": 1e-5, "float16": 5e-3}
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@dataclass(frozen=True)
class Row:
    """One line of the matrix: run(mode, dtype) -> list of (got, reference) array pairs."""

    name: str
    family: str
    run: Callable[[str, str], list]


def rel_l2(pairs) -> float:
    """Largest relative L2 error over (got, reference) pairs, in float64."""
    worst = 0.0
    for got, ref in pairs:
        got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
        if got.shape != ref.shape:
            raise ValueError(f"shape {got.shape} != reference {ref.shape}")
        worst = max(worst, float(np.linalg.norm(got - ref) / np.linalg.norm(ref)))
    return worst


def call(fn, mode: str, *args):
    """fn(*args), compiled with mindspore.jit in graph mode; Tensor outputs to float32 numpy."""
    import mindspore as ms
    if mode == "graph":
        fn = ms.jit(fn)
    out = fn(*args)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.astype(ms.float32).asnumpy() for o in outs]


def tensor(a):
    """A MindSpore Tensor of a numpy array (None stays None)."""
    import mindspore as ms
    return None if a is None else ms.Tensor(a)


def diffusers_fp16(fix: Path, case: str, dtype: str):
    """diffusers' own fp16 output of recorded pipeline case `case` (the area's fp16.npz, written by
    tools/fixtures/pipelines.py write_fp16) for an fp16 cell; None for fp32 or when it is not recorded."""
    path = fix / "fp16.npz"
    if dtype != "float16" or not path.is_file():
        return None
    with np.load(path) as f:
        return f[case] if case in f.files else None


class Seeds(list):
    """An fp16 cell measured over several seeds: one row result (items (got, reference, diffusers fp16)) per seed.
    measure() shows the MEDIAN of msdiff's and of diffusers' per-seed errors and applies the cell rule to them."""


def fp16_seeds(fix: Path, case: str, dtype: str, run_one) -> Optional[Seeds]:
    """Seeds of an fp16 cell where tests/fixtures/<area>/fp16_seeds_<case>.npz exists (written by the area's
    generator: per seed k keys s<k>_expected (diffusers fp32), s<k>_fp16 (diffusers fp16) and the seed's inputs
    s<k>_<name>, e.g. noise_0; seed 0 is the recorded case, its inputs not repeated). run_one(inputs) runs msdiff
    on one seed's inputs ({} for seed 0) and returns its output array; None for fp32 or without the file."""
    path = fix / f"fp16_seeds_{case}.npz"
    if dtype != "float16" or not path.is_file():
        return None
    with np.load(path) as f:
        d = {k: f[k] for k in f.files}
    count = len({k.split("_", 1)[0] for k in d})
    out = Seeds()
    for k in range(count):
        prefix = f"s{k}_"
        inputs = {n[len(prefix):]: v.astype(np.float32) for n, v in d.items()
                  if n.startswith(prefix) and n[len(prefix):] not in ("expected", "fp16")}
        out.append([(run_one(inputs), d[prefix + "expected"], d[prefix + "fp16"])])
    return out


def image_condition_rows(fix: Path, cases: dict, recipe: str) -> list:
    """Recipe rows of the condition-image pipelines (ControlNet, T2I-Adapter): each case's recorded
    arguments, condition image, latents and noise; an "adapter" entry names a separate adapter folder."""
    rows = []
    for name, meta in sorted(cases.items()):
        def run(mode, dtype, name=name, meta=meta):
            import PIL.Image
            import msdiff
            from msdiff import recipes
            d = dict(np.load(fix / f"{name}.npz"))
            args = {k: v for k, v in meta["args"].items() if k != "output_type"}
            args.update(image=PIL.Image.fromarray(d["image"]), latents=d["latents"], output_type="np", mode=mode,
                        noise=[d[f"noise_{i}"] for i in range(meta["num_noise"])])
            if meta.get("adapter"):
                args["adapter"] = msdiff.load(fix / meta["adapter"], dtype=dtype)
            components = msdiff.load_pipeline(fix / meta["folder"], dtype=dtype)
            return [(getattr(recipes, recipe)(components, **args), d["expected"], diffusers_fp16(fix, name, dtype))]

        rows.append(Row(f"{meta['pipeline_class']} ({name})", "recipe", run))
    return rows


def areas() -> list:
    """The row modules of tools/support/ (files not starting with '_'), by name."""
    return sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_"))


def rows(fixtures: Path) -> list:
    """Every row that has a fixture under `fixtures`."""
    out = []
    for area in areas():
        module = importlib.import_module(f"{__name__}.{area}")
        out += module.rows(fixtures / getattr(module, "AREA", area))
    return out


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split())
    first = text.split(" ----")[0]
    return f"{type(e).__name__}: {first[:120]}"


def _split(result) -> tuple:
    """(got, reference) pairs and (diffusers fp16, reference) pairs of a row's result: items are (got, reference)
    or (got, reference, diffusers' own fp16 output or None)."""
    pairs, own = [], []
    for item in result:
        pairs.append((item[0], item[1]))
        if len(item) > 2 and item[2] is not None:
            own.append((item[2], item[1]))
    return pairs, own


def cell(err: float, dtype: str, own: Optional[float] = None) -> str:
    """One cell: ✅ when err is within THRESHOLD[dtype] or, given diffusers' own fp16 error `own` against the same
    fp32 reference, no worse than it; both numbers shown when `own` is known."""
    if not np.isfinite(err):
        return "❌ non-finite output"
    if own is None:
        return f"✅ {err:.0e}" if err <= THRESHOLD[dtype] else f"❌ rel L2 {err:.1e} > {THRESHOLD[dtype]:.0e}"
    if err <= THRESHOLD[dtype] or err <= own:
        return f"✅ {err:.1e} (diffusers fp16 {own:.1e})"
    return f"❌ rel L2 {err:.1e} > {THRESHOLD[dtype]:.0e} and > diffusers fp16 {own:.1e}"


def _median_cell(row: Row, mode: str, dtype: str, seeds: Seeds) -> str:
    """The fp16 cell of a seeds result: the cell rule on the medians of msdiff's and diffusers' per-seed errors
    (each seed's numbers printed to stderr)."""
    errs, owns = [], []
    for k, result in enumerate(seeds):
        pairs, own = _split(result)
        errs.append(rel_l2(pairs))
        owns.append(rel_l2(own))
        print(f"  {row.name} {mode} seed {k}: msdiff {errs[-1]:.2e}, diffusers fp16 {owns[-1]:.2e}", file=sys.stderr)
    text = cell(float(np.median(errs)), dtype, float(np.median(owns)))
    note = f"median of {len(seeds)} seeds"
    if "non-finite" in text:
        return text
    return text[:-1] + f"; {note})" if text.endswith(")") else f"{text} ({note})"


def measure(row: Row) -> list:
    """The four cells of a row, as strings."""
    cells = []
    for mode, dtype in MODES:
        try:
            result = row.run(mode, dtype)
            if isinstance(result, Seeds):
                cells.append(_median_cell(row, mode, dtype, result))
                continue
            pairs, own = _split(result)
            err = rel_l2(pairs)
        except Exception as e:  # a failing cell is a result of the matrix, with its reason
            cells.append(f"❌ {_reason(e)}")
            continue
        cells.append(cell(err, dtype, rel_l2(own) if own else None))
    return cells


def render_row(row: Row, cells: list) -> str:
    """One markdown table line."""
    return f"| {row.name} | {row.family} | " + " | ".join(cells) + " |"


def render(lines: list) -> str:
    """The whole docs/SUPPORT.md text."""
    import mindspore as ms
    head = ["# msdiff support matrix", "",
            "Generated by `python -m tools.support` or `msdiff support` in a checkout (do not edit by hand). Each",
            "cell compares msdiff with the diffusers 0.35.2 fp32 output stored in tests/fixtures: ✅ with the",
            "relative L2 error when it is within 1e-5 (fp32) / 5e-3 (fp16), ❌ with the reason otherwise. Where",
            "the fixtures hold diffusers' own fp16 output, an fp16 cell shows its error against the same fp32",
            "output too, `(diffusers fp16 ...)`, and is ✅ when msdiff's error is within 5e-3 or no worse.",
            "Where the fixtures hold that for 5 seeds (fp16_seeds_<case>.npz: other initial latents / noise, seed 0",
            "the recorded case), both numbers are medians over the seeds, `(...; median of 5 seeds)`, and the rule",
            "applies to the medians: when guidance amplifies fp16 rounding, one draw's error is a random number",
            "(diffusers' own varies 2x between seeds and with the CPU's vector ISA), not a measure of \"no worse\".",
            "Graph = `mindspore.jit`.", "",
            f"Backend: MindSpore {ms.__version__}, device {ms.get_context('device_target')}, "
            f"{platform.machine()}.", "",
            "| Row | Kind | " + " | ".join(HEADERS) + " |",
            "|---|---|" + "---|" * len(HEADERS)]
    notes = ["", "fp16 cells run weights and activations in fp16 end to end (the VAE decodes in fp32, the",
             "recipes' default) and compare with diffusers' fp32 output. A single fp16 UNet call is within",
             "1-2e-3; recipe rows add the error of every step, and rows that return latents (`_end`) or",
             "blend masked latents (inpaint) are not clipped to the image range, so they can exceed 5e-3."]
    return "\n".join(head + lines + notes) + "\n"


def write_support(fixtures: Path, out: Path, only: Optional[list] = None) -> Path:
    """Measure every row (or the named ones, keeping the others from `out`) and write the table."""
    if not fixtures.is_dir():
        raise FileNotFoundError(f"no fixtures folder {fixtures}: the support matrix is measured in a checkout of "
                                f"the msdiff repository (tests/fixtures)")
    all_rows = rows(fixtures)
    names = [row.name for row in all_rows]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise ValueError(f"unknown row name(s) {unknown}; list them with --list")
    measured = {}
    for row in all_rows:
        if only and row.name not in only:
            continue
        measured[row.name] = render_row(row, measure(row))
        print(measured[row.name], file=sys.stderr)
    old = {}
    if only and out.is_file():  # read now, not before measuring: rows others wrote meanwhile are kept
        for line in out.read_text().splitlines():
            if line.startswith("| ") and not line.startswith("| Row "):
                old[line.split(" | ")[0][2:]] = line
    lines = [measured.get(row.name) or old.get(row.name) for row in all_rows]
    lines = [line for line in lines if line]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render(lines))
    tmp.replace(out)
    return out


def main(argv=None) -> int:
    """Command-line entry: python -m tools.support [--fixtures DIR] [--out FILE] [--only ROW ...] [--list]."""
    p = argparse.ArgumentParser(prog="python -m tools.support", description=__doc__.splitlines()[0])
    p.add_argument("--fixtures", default=str(ROOT / "tests" / "fixtures"))
    p.add_argument("--out", default=str(ROOT / "docs" / "SUPPORT.md"))
    p.add_argument("--only", nargs="*", default=None, help="row names to re-measure (see --list)")
    p.add_argument("--list", action="store_true", help="print the row names and exit")
    args = p.parse_args(argv)
    if args.list:
        for row in rows(Path(args.fixtures)):
            print(row.name)
        return 0
    import mindspore as ms
    ms.runtime.launch_blocking()
    print(write_support(Path(args.fixtures), Path(args.out), args.only))
    return 0
