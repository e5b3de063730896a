"""Committed fixtures record the reference versions they were made with, and these equal PINNED.

Every area with a generator (tools/fixtures/<area>.py) must have tests/fixtures/<area>/VERSIONS.json;
any other fixture folder that has a VERSIONS.json is checked too.
"""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def _pinned() -> dict:
    spec = importlib.util.spec_from_file_location("_make_fixtures", ROOT / "tools" / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PINNED


PINNED = _pinned()
AREAS = sorted(p.stem for p in (ROOT / "tools" / "fixtures").glob("*.py") if not p.stem.startswith("_"))
VERSIONED = sorted(p.parent.name for p in FIXTURES.glob("*/VERSIONS.json"))


def test_pinned_names_the_reference_libraries():
    assert set(PINNED) == {"torch", "diffusers", "transformers"}
    assert all(isinstance(v, str) and v[0].isdigit() for v in PINNED.values())


def test_there_are_versioned_fixtures():
    assert AREAS, "tools/fixtures/ has no generator modules"
    assert VERSIONED, f"no tests/fixtures/<area>/VERSIONS.json under {FIXTURES}: run tools/make_fixtures.py"


@pytest.mark.parametrize("area", sorted(set(AREAS) | set(VERSIONED)))
def test_fixture_versions_equal_pinned(area):
    path = FIXTURES / area / "VERSIONS.json"
    assert path.is_file(), (f"{path.parent} has no VERSIONS.json: generate it with "
                            f"`/work/refenv/bin/python tools/make_fixtures.py {area}`")
    recorded = json.loads(path.read_text())
    assert recorded == PINNED, (f"{path} records {recorded} but tools/make_fixtures.py pins {PINNED}: "
                                f"regenerate with `tools/make_fixtures.py {area}` in the pinned env")
