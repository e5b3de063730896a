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


def test_fp16_seeds_cell_uses_the_medians(tmp_path):
    """fp16_seeds_<case>.npz: each seed's inputs go to run_one, the cell shows the medians of msdiff's and
    diffusers' per-seed errors and applies the rule to them; fp32 cells stay one draw."""
    import numpy as np
    ref = np.ones(64, np.float32)
    arrays = {}
    for k, (ours, theirs) in enumerate([(9e-3, 2e-3), (6e-3, 7e-3), (6.5e-3, 6.9e-3)]):
        arrays.update({f"s{k}_expected": ref.astype(np.float16), f"s{k}_fp16": (ref * (1 + theirs)).astype(np.float16)})
        if k:
            arrays[f"s{k}_noise_0"] = np.full(1, ours, np.float16)
    np.savez(tmp_path / "fp16_seeds_case.npz", **arrays)
    seen = []

    def run(mode, dtype):
        def run_one(inputs):
            seen.append(sorted(inputs))
            return ref * (1 + float(inputs["noise_0"][0]) if inputs else 1 + 9e-3)
        return support.fp16_seeds(tmp_path, "case", dtype, run_one) or [(ref, ref)]

    cells = support.measure(support.Row("r", "recipe", run))
    assert seen[:3] == [[], ["noise_0"], ["noise_0"]]
    assert cells[1] == cells[3] == "✅ 0e+00"
    # seed 0 alone would be ❌ (9.0e-3 vs diffusers 2.0e-3); medians 6.5e-3 vs 6.8e-3 (fp16-rounded 1.0068)
    assert cells[0] == cells[2] == "✅ 6.5e-03 (diffusers fp16 6.8e-03; median of 3 seeds)", cells
    assert support.cell(9e-3, "float16", 2e-3).startswith("❌")
