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


def test_non_cpu_formulations_match_float64(monkeypatch):
    """The Ascend/GPU code paths (native conv kernels, composed norms) also run on CPU: check them here."""
    monkeypatch.setattr(_backend, "IS_CPU", False)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((2, 4, 9, 8), (6, 2, 3, 3), (6,)))
    y = ops.conv2d(Tensor(x), Tensor(w), Tensor(b), 2, 1, 1, 2).asnumpy()
    ref = R.conv2d(x, w, b, (2, 2), (1,) * 4, (1, 1), 2)
    assert np.abs(y - ref).max() / np.abs(ref).max() <= 1e-5
    y = ops.conv2d(Tensor(x), Tensor(w[:, :, :2]), None, 1, "same", 1, 2).asnumpy()
    ref = R.conv2d(x, w[:, :, :2], None, (1, 1), (0, 1, 1, 1), (1, 1), 2)
    assert np.abs(y - ref).max() / np.abs(ref).max() <= 1e-5
    x5, w5 = rng.standard_normal((1, 4, 5, 6, 6)).astype(np.float32), rng.standard_normal((3, 4, 3, 3, 3)).astype(np.float32)
    y = ops.conv3d(Tensor(x5), Tensor(w5), Tensor(b[:3]), 1, 1).asnumpy()
    ref = R.conv3d(x5, w5, b[:3], (1, 1, 1), (1, 1, 1))
    assert np.abs(y - ref).max() / np.abs(ref).max() <= 1e-5
    xg, gw = (3 + rng.standard_normal((2, 8, 5, 5))).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    y = ops.group_norm(Tensor(xg), 4, Tensor(gw), Tensor(gw)).asnumpy()
    ref = R.group_norm(xg, 4, gw, gw)
    assert np.abs(y - ref).max() / np.abs(ref).max() <= 1e-5
    xl = rng.standard_normal((2, 5, 16)).astype(np.float32)
    ref = R.layer_norm(xl)
    assert np.abs(ops.layer_norm(Tensor(xl)).asnumpy() - ref).max() / np.abs(ref).max() <= 1e-5
    q = rng.standard_normal((2, 3, 7, 8)).astype(np.float16)
    ref = R.attention(q, q, q)
    y = ops.softmax_bmm_attention(Tensor(q), Tensor(q), Tensor(q), chunk_size=3).asnumpy()
    assert np.abs(y - ref).max() / np.abs(ref).max() <= 2.0 ** -9
