"""fp16 inputs with a large mean (activations ~300): the ops' fp32 upcast must beat a naive fp16
computation (every arithmetic step rounded to fp16, written here in numpy) by at least 10x.

Errors are max |y - ref| / max |ref| against float64 on the same fp16-quantised inputs.
"""
import mindspore as ms
import numpy as np
import ops_reference as R
from mindspore import Tensor

from msdiff import ops

H = np.float16
rng = np.random.default_rng(1)


def err(y, ref):
    y = y.asnumpy() if isinstance(y, Tensor) else y
    return np.abs(y.astype(np.float64) - ref).max() / np.abs(ref).max()


def check_ratio(ours, naive, ref):
    e_ours, e_naive = err(ours, ref), err(naive, ref)
    assert np.isfinite(e_naive)
    assert e_ours * 10 <= e_naive, (e_ours, e_naive)


def naive_group_norm(x, groups, w, b, eps):
    g = x.reshape(x.shape[0], groups, -1)
    mean = np.mean(g, axis=-1, keepdims=True, dtype=H)
    d = (g - mean).astype(H)
    var = np.mean(d * d, axis=-1, keepdims=True, dtype=H)
    y = (d / np.sqrt(var + H(eps))).astype(H).reshape(x.shape)
    return (y * w.reshape(1, -1, 1, 1) + b.reshape(1, -1, 1, 1)).astype(H)


def test_group_norm_fp16_large_mean():
    x = (300 + rng.standard_normal((2, 8, 4, 8))).astype(H)
    w, b = rng.standard_normal(8).astype(H), rng.standard_normal(8).astype(H)
    ref = R.group_norm(x, 4, w, b, 1e-5)
    ours = ops.group_norm(Tensor(x), 4, Tensor(w), Tensor(b), 1e-5)
    assert ours.dtype == ms.float16
    check_ratio(ours, naive_group_norm(x, 4, w, b, 1e-5), ref)


def naive_attention(q, k, v):
    s = (np.matmul(q, np.swapaxes(k, -1, -2)).astype(H) * H(1 / np.sqrt(q.shape[-1]))).astype(H)
    p = np.exp((s - s.max(-1, keepdims=True)).astype(H)).astype(H)
    p = (p / p.sum(-1, keepdims=True, dtype=H)).astype(H)
    out = np.zeros(q.shape[:-1] + v.shape[-1:], H)
    for j in range(v.shape[-2]):  # fp16 accumulation of p @ v
        out = (out + (p[..., j:j + 1] * v[..., j:j + 1, :]).astype(H)).astype(H)
    return out


def test_attention_fp16_large_mean():
    """The large mean sits in the logits (q, k ~ 5: scores ~ 100, fp16 spacing 0.06 there)."""
    q = (5 + rng.standard_normal((2, 2, 16, 16))).astype(H)
    k = (5 + rng.standard_normal((2, 2, 24, 16))).astype(H)
    v = rng.standard_normal((2, 2, 24, 8)).astype(H)
    ref = R.attention(q, k, v)
    for fn in (ops.softmax_bmm_attention, ops.attention):
        ours = fn(Tensor(q), Tensor(k), Tensor(v))
        assert ours.dtype == ms.float16
        check_ratio(ours, naive_attention(q, k, v), ref)


def naive_upfirdn2d(x, k, up, down, pad):
    """upfirdn2d with every product and partial sum rounded to fp16."""
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * up, w * up), H)
    u[:, :, ::up, ::up] = x
    p0, p1 = pad
    u = np.pad(u, ((0, 0), (0, 0), (p0, p1), (p0, p1)))
    kh, kw = k.shape
    oh, ow = (u.shape[2] - kh) // down + 1, (u.shape[3] - kw) // down + 1
    y = np.zeros((n, c, oh, ow), H)
    for i in range(kh):
        for j in range(kw):
            tap = H(k[kh - 1 - i, kw - 1 - j])
            y = (y + (tap * u[:, :, i:i + (oh - 1) * down + 1:down, j:j + (ow - 1) * down + 1:down]).astype(H)).astype(H)
    return y


def naive_conv2d(x, w, stride):
    """Direct conv with every product and partial sum rounded to fp16."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    y = np.zeros((n, o, oh, ow), H)
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                patch = x[:, ci:ci + 1, i:i + (oh - 1) * stride + 1:stride, j:j + (ow - 1) * stride + 1:stride]
                y = (y + (patch * w[:, ci, i, j].reshape(1, -1, 1, 1)).astype(H)).astype(H)
    return y


def naive_upsample_conv(x, w, kern):
    """diffusers' fused up-conv: transposed conv == zero-insert, pad k-1, correlate with w; then the FIR."""
    n, c, h, wd = x.shape
    k = w.shape[3]
    z = np.zeros((n, c, 2 * h - 1, 2 * wd - 1), H)
    z[:, :, ::2, ::2] = x
    z = np.pad(z, ((0, 0), (0, 0), (k - 1, k - 1), (k - 1, k - 1)))
    p = (kern.shape[0] - 2) - (k - 1)
    return naive_upfirdn2d(naive_conv2d(z, w, 1), kern, 1, 1, ((p + 1) // 2 + 1, p // 2 + 1))


def test_fir_with_conv_fp16_large_mean():
    """FirUpsample2D / FirDownsample2D with their conv (the NCSN++ case): long fp16 sums lose digits."""
    x = (300 + rng.standard_normal((1, 64, 6, 6))).astype(H)
    w = (rng.standard_normal((64, 64, 3, 3)) * 0.1).astype(H)
    down_k = R.fir_kernel((1, 3, 3, 1), 2, 1.0).astype(np.float32)
    ours = ops.downsample_fir(Tensor(x), Tensor(w), (1, 3, 3, 1))
    assert ours.dtype == ms.float16
    check_ratio(ours, naive_conv2d(naive_upfirdn2d(x, down_k, 1, 1, (2, 2)), w, 2), R.downsample_fir(x, w, (1, 3, 3, 1)))
    up_k = R.fir_kernel((1, 3, 3, 1), 2, 4.0).astype(np.float32)
    ours = ops.upsample_fir(Tensor(x), Tensor(w), (1, 3, 3, 1))
    assert ours.dtype == ms.float16
    check_ratio(ours, naive_upsample_conv(x, w, up_k), R.upsample_fir(x, w, (1, 3, 3, 1)))


def test_fir_without_conv_fp16_at_rounding_floor():
    """A 4- to 16-tap FIR alone: fp32 accumulation leaves only the final fp16 rounding (<= 2^-11 of scale).

    Here a naive fp16 filter is only 2-4x worse, because the output's own fp16 rounding bounds
    both; the 10x demonstration for FIR is the conv-fused case above.
    """
    x = (300 + rng.standard_normal((1, 8, 8, 8))).astype(H)
    cases = [
        (ops.upsample_fir(Tensor(x), None, (1, 3, 3, 1)), R.upsample_fir(x, None, (1, 3, 3, 1)),
         naive_upfirdn2d(x, R.fir_kernel((1, 3, 3, 1), 2, 4.0).astype(np.float32), 2, 1, (2, 1))),
        (ops.downsample_fir(Tensor(x), None, (1, 3, 3, 1)), R.downsample_fir(x, None, (1, 3, 3, 1)),
         naive_upfirdn2d(x, R.fir_kernel((1, 3, 3, 1), 2, 1.0).astype(np.float32), 1, 2, (1, 1))),
    ]
    for ours, ref, naive in cases:
        assert ours.dtype == ms.float16
        assert err(ours, ref) <= 2.0 ** -11
        assert err(ours, ref) < err(naive, ref)
