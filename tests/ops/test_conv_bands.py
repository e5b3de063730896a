"""The CPU conv2d's row bands (rows padded by Concat, each band's rows a Gather, columns padded by Im2Col)
against a float64 numpy reference: strides, dilations, unequal row / column padding, asymmetric padding, jit."""
import mindspore as ms
import numpy as np
import ops_reference as R
import pytest
from mindspore import Tensor

from msdiff import ops
from msdiff.ops import _matmul_conv

rng = np.random.default_rng(7)


def _close(y, ref):
    y = y.asnumpy().astype(np.float64)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    assert np.abs(y - ref).max() / np.abs(ref).max() <= 1e-6


@pytest.mark.parametrize("stride, padding, dilation, k", [((1, 1), (1, 1), (1, 1), 3), ((2, 1), (2, 1), (1, 2), 3),
                                                          ((1, 2), (0, 2), (2, 1), 3), ((1, 1), "same", (1, 1), 4)])
def test_conv2d_bands_match_float64(monkeypatch, stride, padding, dilation, k):
    monkeypatch.setattr(_matmul_conv, "COLS_BUDGET", 700)  # a few output rows per band
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((2, 4, 13, 9), (5, 4, k, k), (5,)))
    if padding == "same":
        pads = (1, 2, 1, 2)
    else:
        pads = (padding[0], padding[0], padding[1], padding[1])
    ref = R.conv2d(x, w, b, stride, pads, dilation, 1)
    _close(ops.conv2d(Tensor(x), Tensor(w), Tensor(b), stride, padding, dilation), ref)


def test_conv2d_bands_under_jit(monkeypatch):
    monkeypatch.setattr(_matmul_conv, "COLS_BUDGET", 700)
    x, w = rng.standard_normal((1, 3, 10, 8)).astype(np.float32), rng.standard_normal((4, 3, 3, 3)).astype(np.float32)

    @ms.jit
    def f(x, w):
        return ops.conv2d(x, w, None, 1, 1)
    _close(f(Tensor(x), Tensor(w)), R.conv2d(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1))
