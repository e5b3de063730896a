"""ops.group_norm's two CPU formulations (MindSpore's GroupNorm kernel below
`_backend.CPU_GROUP_NORM_BATCHNORM_MIN` elements, BatchNorm-kernel passes from there on) against float64."""
import mindspore as ms
import numpy as np
import ops_reference as R
import pytest
from mindspore import Tensor, mint

from msdiff import ops
from msdiff.ops import _backend
from msdiff.ops.norm import _group_norm_batchnorm

pytestmark = pytest.mark.skipif(not _backend.IS_CPU, reason="the CPU formulations")
rng = np.random.default_rng(0)


def rel_l2(y, ref):
    y = y.asnumpy().astype(np.float64)
    assert y.shape == ref.shape
    return np.linalg.norm(y - ref) / np.linalg.norm(ref)


def case(shape, mean):
    x = (rng.standard_normal(shape) * 2 + mean).astype(np.float32)
    w = (rng.standard_normal(shape[1]) * 0.5 + 1).astype(np.float32)
    b = rng.standard_normal(shape[1]).astype(np.float32)
    return x, w, b


@pytest.mark.parametrize("mean", [0.0, 300.0])
def test_batchnorm_path_is_taken_and_matches_float64(mean):
    shape = (2, 32, 64, 64)
    assert np.prod(shape) >= _backend.CPU_GROUP_NORM_BATCHNORM_MIN
    x, w, b = case(shape, mean)
    X, W, B = Tensor(x), Tensor(w), Tensor(b)
    y = ops.group_norm(X, 8, W, B, 1e-5)
    assert np.array_equal(y.asnumpy(), _group_norm_batchnorm(X, 8, W, B, 1e-5).asnumpy())
    # MindSpore's GroupNorm kernel: 2.5e-8 here; a naive fp32 formulation: 2e-5 at mean 300
    assert rel_l2(y, R.group_norm(x, 8, w, b, 1e-5)) < 3e-7
    assert rel_l2(ops.group_norm(X, 8, eps=1e-6), R.group_norm(x, 8, eps=1e-6)) < 3e-7
    # weight without bias: no shift (as below the threshold and off CPU)
    assert rel_l2(ops.group_norm(X, 8, W, None), R.group_norm(x, 8, w)) < 3e-7


def test_small_inputs_keep_the_groupnorm_kernel():
    x, w, b = case((2, 32, 8, 8), 3.0)
    X, W, B = Tensor(x), Tensor(w), Tensor(b)
    assert np.array_equal(ops.group_norm(X, 8, W, B).asnumpy(),
                          mint.nn.functional.group_norm(X, 8, W, B, 1e-5).asnumpy())


@pytest.mark.parametrize("shape, groups", [((2, 6, 3, 61, 59), 3), ((1, 12, 20011), 4), ((2, 4, 3, 5), 2)])
def test_batchnorm_formulation_any_rank_and_chunking(shape, groups):
    """5-D, 3-D and tiny inputs; group sizes 21594 (3 statistic chunks of 7198), 60033 (prime factors 3, 20011:
    chunks of 3) and 30 (one chunk)."""
    x, w, b = case(shape, 30.0)
    y = _group_norm_batchnorm(Tensor(x), groups, Tensor(w), Tensor(b), 1e-5)
    assert rel_l2(y, R.group_norm(x, groups, w, b, 1e-5)) < 3e-7


def test_batchnorm_path_fp16_and_graph_mode():
    x, w, b = case((2, 32, 64, 64), 3.0)
    xh, wh, bh = (Tensor(a.astype(np.float16)) for a in (x, w, b))
    yh = ops.group_norm(xh, 8, wh, bh)
    assert yh.dtype == ms.float16
    # fp32 compute, one rounding: the fp16 result is the fp32 result on the fp16 inputs, rounded
    y32 = ops.group_norm(xh.astype(ms.float32), 8, wh.astype(ms.float32), bh.astype(ms.float32))
    assert np.array_equal(yh.asnumpy(), y32.asnumpy().astype(np.float16))
    X, W, B = Tensor(x), Tensor(w), Tensor(b)
    graph = ms.jit(_jit_group_norm)(X, W, B)
    assert rel_l2(graph, R.group_norm(x, 8, w, b, 1e-5)) < 3e-7


def _jit_group_norm(x, w, b):
    return ops.group_norm(x, 8, w, b, 1e-5)
