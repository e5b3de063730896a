"""The CPU im2col-matmul conv2d against MindSpore's native Conv2D and a float64 numpy reference."""
import mindspore as ms
import numpy as np
import ops_reference as R
import pytest
from mindspore import Tensor
from mindspore import ops as msops

from msdiff import ops
from msdiff.ops import _backend

rng = np.random.default_rng(4)
CASES = [(s, p, g, k) for s in (1, 2) for p in (0, 1) for g in (1, 2) for k in (1, 3)]


def native(x, w, b, s, p, g):
    y = msops.conv2d(x, w, pad_mode="pad", padding=p, stride=s, groups=g)
    return y + b.reshape(1, -1, 1, 1)


@pytest.mark.skipif(not _backend.IS_CPU, reason="the matmul formulation is the CPU path")
@pytest.mark.parametrize("s, p, g, k", CASES)
def test_fast_conv2d_fp32_matches_native_and_float64(s, p, g, k):
    x = rng.standard_normal((2, 8, 11, 10)).astype(np.float32)
    w = rng.standard_normal((6, 8 // g, k, k)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    ref = R.conv2d(x, w, b, (s, s), (p,) * 4, (1, 1), g)
    fast = ops.conv2d(Tensor(x), Tensor(w), Tensor(b), s, p, 1, g).asnumpy().astype(np.float64)
    nat = native(Tensor(x), Tensor(w), Tensor(b), s, p, g).asnumpy().astype(np.float64)
    scale = np.abs(ref).max()
    assert np.abs(fast - ref).max() / scale <= 1e-6
    assert np.abs(fast - nat).max() / scale <= 2e-6


@pytest.mark.skipif(not _backend.IS_CPU, reason="the matmul formulation is the CPU path")
@pytest.mark.parametrize("s, p, g, k", CASES)
def test_fast_conv2d_fp16_matches_native_and_float64(s, p, g, k):
    x = rng.standard_normal((2, 8, 11, 10)).astype(np.float16)
    w = (rng.standard_normal((6, 8 // g, k, k)) * 0.3).astype(np.float16)
    b = rng.standard_normal(6).astype(np.float16)
    ref = R.conv2d(x, w, b, (s, s), (p,) * 4, (1, 1), g)
    fast = ops.conv2d(Tensor(x), Tensor(w), Tensor(b), s, p, 1, g)
    assert fast.dtype == ms.float16
    fast = fast.asnumpy().astype(np.float64)
    scale = np.abs(ref).max()
    # fp32 accumulation: only the output's fp16 rounding remains (half an ulp, <= 2^-11 of scale).
    assert np.abs(fast - ref).max() / scale <= 2.0 ** -11
    nat = native(Tensor(x), Tensor(w), Tensor(b), s, p, g).asnumpy().astype(np.float64)
    assert np.abs(fast - nat).max() / scale <= 2.0 ** -9
