"""The issues' parity bounds against a diffusers fp32 reference, shared by the net tests."""
import mindspore as ms
import numpy as np


def assert_parity(got, ref: np.ndarray, what: str, dtype: str = "float32") -> None:
    """fp32: max abs <= 1e-4 and relative L2 <= 1e-5; fp16: relative L2 <= 5e-3 (issue 4's bounds)."""
    got = got.astype(ms.float32).asnumpy().astype(np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} vs {ref.shape}"
    diff = got - ref
    max_abs, rel = float(np.abs(diff).max()), float(np.linalg.norm(diff) / np.linalg.norm(ref))
    if dtype == "float32":
        assert max_abs <= 1e-4 and rel <= 1e-5, f"{what} fp32: max abs {max_abs:.3g}, rel L2 {rel:.3g}"
    else:
        assert rel <= 5e-3, f"{what} fp16: rel L2 {rel:.3g}"
