"""docs/SUPPORT.md is what `python -m tools.support` measures: re-run a few rows and compare."""
import re
from pathlib import Path

import pytest

import tools.support as support

ROOT = Path(__file__).parent.parent
DOC = ROOT / "docs" / "SUPPORT.md"
FIXTURES = ROOT / "tests" / "fixtures"
RECHECK = ("group_norm (activations ~300)", "CLIPTextModel", "UNet2DModel (uncond)")


def _doc_rows() -> dict:
    rows = {}
    for line in DOC.read_text().splitlines():
        if line.startswith("| ") and not line.startswith("| Row "):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0]] = cells[2:]
    return rows


def _value(cell: str) -> float:
    return float(re.search(r"\d\.?\d*e[-+]\d+", cell).group(0))


def test_every_row_with_a_fixture_is_in_the_document():
    names = [row.name for row in support.rows(FIXTURES)]
    assert len(names) >= 10
    assert sorted(_doc_rows()) == sorted(names)


def test_every_failing_cell_has_a_reason():
    for name, cells in _doc_rows().items():
        assert len(cells) == 4, name
        for cell in cells:
            assert cell.startswith(("✅", "❌")), (name, cell)
            if cell.startswith("❌"):
                assert len(cell) > 4, (name, cell)


@pytest.mark.parametrize("name", RECHECK)
def test_rerun_agrees_with_the_document(name):
    row = next(r for r in support.rows(FIXTURES) if r.name == name)
    measured = support.measure(row)
    documented = _doc_rows()[name]
    for got, doc in zip(measured, documented):
        assert got[0] == doc[0], (name, got, doc)
        if got.startswith("✅"):
            assert _value(doc) / 3 <= _value(got) <= _value(doc) * 3, (name, got, doc)


def test_rel_l2_rejects_shape_mismatch():
    import numpy as np
    with pytest.raises(ValueError, match="shape"):
        support.rel_l2([(np.zeros(3), np.ones(4))])
