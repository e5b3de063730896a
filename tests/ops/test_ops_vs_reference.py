"""Every op against a float64 numpy reference: fp32 max abs error <= 1e-5 of max |reference|."""
import mindspore as ms
import numpy as np
import ops_reference as R
import pytest
from mindspore import Tensor

from msdiff import ops

RTOL = 1e-5
rng = np.random.default_rng(0)


def rand(*shape, scale=1.0, mean=0.0):
    return (rng.standard_normal(shape) * scale + mean).astype(np.float32)


def assert_close(y, ref, rtol=RTOL):
    y = y.asnumpy().astype(np.float64)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    err = np.abs(y - ref).max() / np.abs(ref).max()
    assert err <= rtol, err


@pytest.mark.parametrize("groups, shape", [(2, (2, 4, 5, 6)), (4, (2, 8, 3)), (3, (1, 6, 2, 3, 4))])
def test_group_norm(groups, shape):
    x, w, b = rand(*shape, mean=3.0), rand(shape[1]), rand(shape[1])
    assert_close(ops.group_norm(Tensor(x), groups, Tensor(w), Tensor(b), 1e-6), R.group_norm(x, groups, w, b, 1e-6))
    assert_close(ops.group_norm(Tensor(x), groups), R.group_norm(x, groups))


def test_layer_rms_grn():
    x, w, b = rand(2, 5, 16, mean=2.0), rand(16), rand(16)
    assert_close(ops.layer_norm(Tensor(x), Tensor(w), Tensor(b)), R.layer_norm(x, w, b))
    assert_close(ops.layer_norm(Tensor(x)), R.layer_norm(x))
    assert_close(ops.rms_norm(Tensor(x), Tensor(w)), R.rms_norm(x, w))
    xg, g, bg = rand(2, 4, 5, 8), rand(1, 1, 1, 8), rand(1, 1, 1, 8)
    assert_close(ops.global_response_norm(Tensor(xg), Tensor(g), Tensor(bg)), R.global_response_norm(xg, g, bg))


@pytest.mark.parametrize("chunk", [None, 3])
def test_attention_masks(chunk):
    q, k, v = rand(2, 3, 7, 8), rand(2, 3, 5, 8), rand(2, 3, 5, 4)
    bool_mask = rng.random((2, 1, 7, 5)) > 0.3
    bool_mask[..., 0] = True
    add_mask = rand(2, 1, 1, 5)
    for fn in (ops.softmax_bmm_attention, ops.attention):
        assert_close(fn(Tensor(q), Tensor(k), Tensor(v), chunk_size=chunk), R.attention(q, k, v))
        assert_close(fn(Tensor(q), Tensor(k), Tensor(v), Tensor(bool_mask), chunk_size=chunk),
                     R.attention(q, k, v, bool_mask))
        assert_close(fn(Tensor(q), Tensor(k), Tensor(v), Tensor(add_mask), scale=0.3, chunk_size=chunk),
                     R.attention(q, k, v, add_mask, 0.3))


def test_activations_and_linear():
    x = rand(3, 10, scale=3.0)
    assert_close(ops.silu(Tensor(x)), R.silu(x))
    assert_close(ops.gelu(Tensor(x)), R.gelu(x))
    assert_close(ops.gelu(Tensor(x), "tanh"), R.gelu(x, "tanh"))
    x64 = x.astype(np.float64)
    assert_close(ops.quick_gelu(Tensor(x)), x64 / (1 + np.exp(-1.702 * x64)))
    a, g = x64[:, :5], x64[:, 5:]
    assert_close(ops.geglu(Tensor(x)), a * R.gelu(g))
    w, b = rand(6, 10), rand(6)
    assert_close(ops.linear(Tensor(x), Tensor(w), Tensor(b)), x64 @ w.T.astype(np.float64) + b)
    x3 = rand(2, 3, 10)
    assert_close(ops.linear(Tensor(x3), Tensor(w)), x3.astype(np.float64) @ w.T.astype(np.float64))


@pytest.mark.parametrize("flip, shift, dim", [(False, 1.0, 32), (True, 0.0, 33)])
def test_timestep_embedding(flip, shift, dim):
    t = np.array([0.0, 1.0, 250.0, 999.0], np.float32)
    assert_close(ops.timestep_embedding(Tensor(t), dim, flip, shift, 1.0), R.timestep_embedding(t, dim, flip, shift))


CONV2D_CASES = [  # c, o, k, stride, padding, dilation, groups
    (4, 6, 3, 1, 1, 1, 1), (4, 6, 3, 2, 0, 1, 2), (4, 6, 1, 1, 0, 1, 1), (4, 6, 1, 2, 0, 1, 2),
    (4, 4, 3, 1, 2, 2, 4), (6, 4, (3, 2), (2, 1), (1, 0), 1, 2), (3, 5, 4, 2, 1, 1, 1),
]


@pytest.mark.parametrize("c, o, k, s, p, d, g", CONV2D_CASES)
def test_conv2d(c, o, k, s, p, d, g):
    kk = (k, k) if isinstance(k, int) else k
    x, w, b = rand(2, c, 9, 8), rand(o, c // g, *kk), rand(o)
    pp = (p, p) if isinstance(p, int) else p
    ref = R.conv2d(x, w, b, (s, s) if isinstance(s, int) else s, (pp[0], pp[0], pp[1], pp[1]), (d, d), g)
    assert_close(ops.conv2d(Tensor(x), Tensor(w), Tensor(b), s, p, d, g), ref)


def test_conv2d_same_padding():
    x, w = rand(1, 3, 7, 6), rand(4, 3, 4, 3)
    assert_close(ops.conv2d(Tensor(x), Tensor(w), padding="same"), R.conv2d(x, w, padding=(1, 2, 1, 1)))


def test_conv2d_row_bands(monkeypatch):
    from msdiff.ops import _matmul_conv
    monkeypatch.setattr(_matmul_conv, "COLS_BUDGET", 500)
    x, w, b = rand(2, 4, 11, 9), rand(6, 2, 3, 3), rand(6)
    assert_close(ops.conv2d(Tensor(x), Tensor(w), Tensor(b), 2, 1, 1, 2), R.conv2d(x, w, b, (2, 2), (1,) * 4, (1, 1), 2))


@pytest.mark.parametrize("s, p, d, g, k", [((1, 1, 1), (1, 1, 1), (1, 1, 1), 1, (3, 3, 3)),
                                           ((2, 1, 2), (1, 1, 0), (1, 2, 1), 2, (3, 3, 2)),
                                           ((1, 1, 1), (1, 0, 0), (1, 1, 1), 1, (3, 1, 1))])
def test_conv3d(s, p, d, g, k):
    x, w, b = rand(2, 4, 5, 7, 6), rand(6, 4 // g, *k), rand(6)
    assert_close(ops.conv3d(Tensor(x), Tensor(w), Tensor(b), s, p, d, g), R.conv3d(x, w, b, s, p, d, g))


@pytest.mark.parametrize("s, p, op, g, d", [(2, 1, 1, 1, 1), (2, 0, 0, 2, 1), (1, 1, 0, 1, 2), (3, 1, 2, 1, 1)])
def test_conv_transpose2d(s, p, op, g, d):
    x, w, b = rand(2, 4, 5, 6), rand(4, 3, 3, 3), rand(3 * g)
    ref = R.conv_transpose2d(x, w, b, (s, s), (p, p), (op, op), g, (d, d))
    assert_close(ops.conv_transpose2d(Tensor(x), Tensor(w), Tensor(b), s, p, op, g, d), ref)


@pytest.mark.parametrize("up, down, pad", [(1, 1, (0, 0)), (2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (-1, 2)),
                                           (3, 1, (0, -1))])
def test_upfirdn2d(up, down, pad):
    x, k = rand(2, 3, 8, 7), rand(4, 3)
    ref = R.upfirdn2d(x, k, up, down, pad)
    assert_close(ops.upfirdn2d(Tensor(x), k, up, down, pad), ref)
    assert_close(ops.upfirdn2d(Tensor(x), Tensor(k), up, down, pad), ref)


@pytest.mark.parametrize("kernel", [(1, 3, 3, 1), None])
@pytest.mark.parametrize("with_conv", [False, True])
def test_fir_resampling(kernel, with_conv):
    x = rand(2, 4, 8, 8)
    w = rand(6, 4, 3, 3, scale=0.2) if with_conv else None
    tw = None if w is None else Tensor(w)
    assert_close(ops.upsample_fir(Tensor(x), tw, kernel), R.upsample_fir(x, w, kernel))
    assert_close(ops.downsample_fir(Tensor(x), tw, kernel), R.downsample_fir(x, w, kernel))
    assert_close(ops.upsample_fir(Tensor(x), tw, kernel, factor=2, gain=0.5), R.upsample_fir(x, w, kernel, 2, 0.5))


INTERP_MODES = [("nearest", False), ("bilinear", False), ("bilinear", True)]
INTERP_CASES = ([(size, None, m, a) for size in ((10, 14), (7, 9), (3, 4)) for m, a in INTERP_MODES]
                + [(None, scale, m, False) for scale in (2.0, 1.5, (2.3, 0.5)) for m in ("nearest", "bilinear")])


@pytest.mark.parametrize("size, scale, mode, align", INTERP_CASES)
def test_interpolate(size, scale, mode, align):
    x = rand(2, 3, 5, 7)
    sf = None if scale is None else (scale if isinstance(scale, tuple) else (scale, scale))
    out = size or (int(np.floor(5 * sf[0])), int(np.floor(7 * sf[1])))
    y = ops.interpolate(Tensor(x), size=size, scale_factor=scale, mode=mode, align_corners=align)
    assert_close(y, R.interpolate(x, out, sf, mode, align))


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
def test_pad(mode):
    x = rand(2, 3, 5, 6)
    np_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}[mode]
    ref = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (2, 1), (1, 3)), mode=np_mode)
    assert_close(ops.pad(Tensor(x), (1, 3, 2, 1), mode), ref)


def test_embedding():
    table, ids = rand(10, 4), np.array([[1, 7, 7], [0, 9, 2]], np.int32)
    assert_close(ops.embedding(Tensor(ids), Tensor(table)), table[ids].astype(np.float64))


def test_outputs_keep_input_dtype():
    x = Tensor(rand(1, 4, 6, 6)).astype(ms.float16)
    w = Tensor(rand(4, 4, 3, 3)).astype(ms.float16)
    for y in (ops.conv2d(x, w, None, 1, 1), ops.group_norm(x, 2), ops.upsample_fir(x), ops.downsample_fir(x, w),
              ops.interpolate(x, scale_factor=2, mode="bilinear"), ops.conv_transpose2d(x, w, None, 2),
              ops.linear(x, w.reshape(24, 6)), ops.layer_norm(x), ops.rms_norm(x),
              ops.conv3d(x.reshape(1, 4, 2, 3, 6), w.reshape(4, 4, 1, 3, 3))):
        assert y.dtype == ms.float16
