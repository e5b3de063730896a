"""The shipped digit model (msdiff/assets/digits): generated digits are classified as the requested class.

A LogisticRegression fitted on the real scikit-learn digits (same 16x16 preprocessing) must put at
least 90% of 200 generated samples (20 per class) in their requested class; noise scores near chance.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]


def _eval_module():
    spec = importlib.util.spec_from_file_location("_eval_digits", ROOT / "tools" / "eval_digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_digits_have_the_requested_class():
    result = _eval_module().evaluate(per_class=20, num_inference_steps=QUALITY_STEPS)
    assert result["samples"] == 200
    assert result["classifier_held_out_accuracy"] >= 0.9
    assert result["noise_accuracy"] <= 0.25
    assert result["generated_accuracy"] >= 0.9, result


def test_digit_grid_has_a_row_per_class():
    from msdiff.recipes.unconditional import digit_grid, load_digits_model

    components = load_digits_model()
    grid = digit_grid(components, per_class=3, num_inference_steps=4, seed=1, progress=False, scale=1)
    assert grid.mode == "L" and grid.size == (3 * 18 + 2, 10 * 18 + 2)
    again = digit_grid(components, per_class=3, num_inference_steps=4, seed=1, progress=False, scale=1)
    assert np.array_equal(np.asarray(grid), np.asarray(again))


QUALITY_STEPS = 20
