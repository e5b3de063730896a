"""Generate msdiff's reference fixtures (tests/fixtures/<area>/) with diffusers and transformers.

Each area is a module tools/fixtures/<area>.py with `make(out_dir: pathlib.Path)`; it builds tiny
randomly initialised reference components, saves them with `save_pretrained(...,
safe_serialization=True)` and their inputs/outputs as .npz/.safetensors. The test suite reads
only the committed outputs and never imports torch.

Reference environment (kept apart from msdiff's; torch 2.13.0 is the CPU build pip finds here):

    python3.11 -m venv /work/refenv
    /work/refenv/bin/pip install torch==2.13.0 diffusers==0.35.2 transformers==4.57.1 \
        "numpy<2" safetensors scipy

Regenerate (from the repository root):

    /work/refenv/bin/python tools/make_fixtures.py              # every area
    /work/refenv/bin/python tools/make_fixtures.py clip sd_unet  # some areas
    /work/refenv/bin/python tools/make_fixtures.py --check      # regenerate into a temporary
                                                                # folder, compare byte for byte
    /work/refenv/bin/python tools/make_fixtures.py --out /tmp/fx samplers   # elsewhere
    /work/refenv/bin/python tools/make_fixtures.py --list

The reference library versions must equal PINNED (seeded initialisation and even saved key
names change between versions, e.g. transformers 5 drops CLIP's `text_model.` prefix); each
area gets a VERSIONS.json recording them, and tests/test_fixture_versions.py fails when a
recorded version differs from PINNED. To move to new versions: change PINNED, rebuild the
reference environment, regenerate every area, and review the test failures that follow.

Determinism: the script re-executes itself with PYTHONHASHSEED=0 (set iteration order, e.g.
diffusers' `_use_default_values` list, depends on it); before each area torch/numpy/random
are seeded with 0 and torch runs on one thread with deterministic algorithms, so a
regeneration reproduces the files bit for bit.
"""
import argparse
import filecmp
import importlib
import json
import os
import sys
import tempfile
from pathlib import Path

PINNED = {"torch": "2.13.0", "diffusers": "0.35.2", "transformers": "4.57.1"}

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
FIXTURES = ROOT / "tests" / "fixtures"
SEED = 0


def areas() -> list:
    """Names of the generator modules in tools/fixtures/ (files not starting with '_')."""
    return sorted(p.stem for p in (TOOLS / "fixtures").glob("*.py") if not p.stem.startswith("_"))


def installed_versions() -> dict:
    """Versions of the pinned packages in this environment (local tags such as '+cpu' dropped)."""
    from importlib.metadata import version

    return {name: version(name).split("+")[0] for name in PINNED}


def check_versions() -> dict:
    """Refuse to generate unless the reference environment matches PINNED."""
    found = installed_versions()
    wrong = {k: v for k, v in found.items() if v != PINNED[k]}
    if wrong:
        raise SystemExit("reference environment differs from PINNED: "
                         + ", ".join(f"{k} {found[k]} (pinned {PINNED[k]})" for k in wrong)
                         + "\nsee the docstring of tools/make_fixtures.py for how to build it")
    return found


def make_deterministic(seed: int = SEED) -> None:
    """Seed torch/numpy/random, one thread, deterministic torch algorithms."""
    import random

    import numpy as np
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def generate(area: str, out_dir: Path, versions: dict) -> None:
    """Run one area's make(out_dir) deterministically, then record VERSIONS.json."""
    module = importlib.import_module(f"fixtures.{area}")
    out_dir.mkdir(parents=True, exist_ok=True)
    make_deterministic()
    module.make(out_dir)
    (out_dir / "VERSIONS.json").write_text(json.dumps(versions, indent=2, sort_keys=True) + "\n")


def differences(a: Path, b: Path) -> list:
    """Relative paths whose bytes differ between two folder trees (or exist in one only)."""
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    diff = sorted(str(p) for p in files_a ^ files_b)
    diff += sorted(str(p) for p in files_a & files_b if not filecmp.cmp(a / p, b / p, shallow=False))
    return diff


def main(argv=None) -> int:
    """Command line: generate (or --check) the named areas, or all of them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("areas", nargs="*", help=f"areas to generate (default: all of {areas()})")
    parser.add_argument("--check", action="store_true", help="regenerate into a temporary folder and "
                        "compare with tests/fixtures byte for byte; write nothing")
    parser.add_argument("--list", action="store_true", help="list the areas and exit")
    parser.add_argument("--out", type=Path, default=FIXTURES, help="write <area>/ folders here "
                        "instead of tests/fixtures (and compare against it with --check)")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(areas()))
        return 0
    unknown = [a for a in args.areas if a not in areas()]
    if unknown:
        parser.error(f"unknown area(s) {unknown}; known: {areas()}")
    versions = check_versions()
    sys.path.insert(0, str(TOOLS))
    failed = []
    for area in args.areas or areas():
        if args.check:
            with tempfile.TemporaryDirectory() as tmp:
                generate(area, Path(tmp) / area, versions)
                diff = differences(args.out / area, Path(tmp) / area)
            print(f"{area}: {'identical' if not diff else 'DIFFERS: ' + ', '.join(diff[:10])}")
            failed += [area] if diff else []
        else:
            generate(area, args.out / area, versions)
            print(f"{area}: wrote {args.out / area}")
    return 1 if failed else 0


if __name__ == "__main__":
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]])
    sys.exit(main())
