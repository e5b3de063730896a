"""Every exported op runs on the current backend, and inside mindspore.jit matches PyNative."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from msdiff import ops

rng = np.random.default_rng(2)


def t(*shape, dtype=ms.float32):
    return Tensor(rng.standard_normal(shape).astype(np.float32)).astype(dtype)


X4, W33, B4 = t(2, 4, 6, 6), t(4, 2, 3, 3), t(4)
Q, K, V = t(2, 2, 5, 8), t(2, 2, 7, 8), t(2, 2, 7, 4)
SEQ = t(2, 5, 8)
BOOL_MASK = Tensor(rng.random((2, 1, 5, 7)) > 0.2)
STEPS = Tensor(np.array([1.0, 500.0], np.float32))
IDS = Tensor(np.array([[0, 3], [2, 1]], np.int32))


# Module-level functions (mindspore.jit needs their source); one per exported op.
def f_group_norm(x): return ops.group_norm(x, 2, B4, B4)
def f_layer_norm(x): return ops.layer_norm(x, SEQ[0, 0], SEQ[0, 1])
def f_rms_norm(x): return ops.rms_norm(x, SEQ[0, 0])
def f_grn(x): return ops.global_response_norm(x.transpose(0, 2, 3, 1), B4, B4)
def f_softmax_bmm_attention(q): return ops.softmax_bmm_attention(q, K, V, BOOL_MASK, chunk_size=2)
def f_attention(q): return ops.attention(q, K, V)
def f_conv2d(x): return ops.conv2d(x, W33, B4, 2, 1, 1, 2)
def f_conv2d_1x1(x): return ops.conv2d(x, W33[:, :, :1, :1], None, 1, 0, 1, 2)
def f_temporal_conv(x): return ops.temporal_conv(x.reshape(2, 4, 2, 3, 6), W33.reshape(72)[:48].reshape(4, 4, 3, 1, 1),
                                                  B4, 1)


def f_adaptive_avg_pool2d(x): return ops.adaptive_avg_pool2d(x, (2, 5))


def f_conv3d(x): return ops.conv3d(x.reshape(2, 4, 2, 3, 6), W33.reshape(4, 2, 1, 3, 3), B4, 1, (0, 1, 1), 1, 2)
def f_conv_transpose2d(x): return ops.conv_transpose2d(x, W33, B4[:2], 2, 1, 1)
def f_linear(x): return ops.linear(x, SEQ[0], SEQ[1, :, 0])
def f_silu(x): return ops.silu(x)
def f_gelu(x): return ops.gelu(x) + ops.gelu(x, "tanh")
def f_quick_gelu(x): return ops.quick_gelu(x)
def f_geglu(x): return ops.geglu(x)
def f_timestep_embedding(s): return ops.timestep_embedding(s, 32, True, 0.0)
def f_interpolate(x): return ops.interpolate(x, scale_factor=2.0) + ops.interpolate(x, size=(12, 12), mode="bilinear")
def f_interpolate_frac(x): return ops.interpolate(x, scale_factor=1.5, mode="bilinear")
def f_pad(x): return ops.pad(x, (1, 2, 0, 1)) + ops.pad(x, (1, 2, 0, 1), "reflect")
def f_embedding(ids): return ops.embedding(ids, SEQ[0])
def f_upfirdn2d(x): return ops.upfirdn2d(x, np.ones((3, 3), np.float32) / 9, 2, 1, (1, 1))
def f_upsample_fir(x): return ops.upsample_fir(x, None, (1, 3, 3, 1))
def f_upsample_fir_conv(x): return ops.upsample_fir(x, W33.reshape(2, 4, 3, 3)[:, :4], (1, 3, 3, 1))
def f_downsample_fir(x): return ops.downsample_fir(x, None, (1, 3, 3, 1))
def f_downsample_fir_conv(x): return ops.downsample_fir(x, W33.reshape(2, 4, 3, 3)[:, :4], (1, 3, 3, 1))
def f_expand_as(x): return x * ops.expand_as(x[:, :1, :1] + 1.0, x)
def f_swapaxes(x): return ops.swapaxes(x, 1, 2) * 2.0
def f_permute(x): return ops.permute(x, (2, 0, 1)) * 2.0
def f_add_channels(x): return ops.add_channels(x, x[:, :, 0] * 2.0)
def f_activate(x): return ops.activate(x, "gelu") + ops.activate(x, "silu")


CASES = {
    "group_norm": (f_group_norm, X4), "layer_norm": (f_layer_norm, SEQ), "rms_norm": (f_rms_norm, SEQ),
    "global_response_norm": (f_grn, X4), "softmax_bmm_attention": (f_softmax_bmm_attention, Q),
    "attention": (f_attention, Q), "conv2d": (f_conv2d, X4), "conv2d_1x1": (f_conv2d_1x1, X4),
    "conv3d": (f_conv3d, X4), "temporal_conv": (f_temporal_conv, X4),
    "adaptive_avg_pool2d": (f_adaptive_avg_pool2d, X4), "conv_transpose2d": (f_conv_transpose2d, X4), "linear": (f_linear, SEQ),
    "silu": (f_silu, SEQ), "gelu": (f_gelu, SEQ), "quick_gelu": (f_quick_gelu, SEQ), "geglu": (f_geglu, SEQ),
    "timestep_embedding": (f_timestep_embedding, STEPS), "interpolate": (f_interpolate, X4),
    "interpolate_frac": (f_interpolate_frac, X4), "pad": (f_pad, X4), "embedding": (f_embedding, IDS),
    "upfirdn2d": (f_upfirdn2d, X4), "upsample_fir": (f_upsample_fir, X4), "upsample_fir_conv": (f_upsample_fir_conv, X4),
    "downsample_fir": (f_downsample_fir, X4), "downsample_fir_conv": (f_downsample_fir_conv, X4),
    "expand_as": (f_expand_as, SEQ), "swapaxes": (f_swapaxes, SEQ), "permute": (f_permute, SEQ),
    "add_channels": (f_add_channels, SEQ), "activate": (f_activate, SEQ),
}


def test_every_exported_op_has_a_case():
    covered = set(CASES) | {name.removesuffix("_1x1").removesuffix("_frac").removesuffix("_conv") for name in CASES}
    assert set(ops.__all__) <= covered, set(ops.__all__) - covered


@pytest.mark.parametrize("name", sorted(CASES))
def test_runs_on_backend_and_under_jit(name):
    fn, arg = CASES[name]
    eager = fn(arg).asnumpy()
    assert np.isfinite(eager).all()
    graph = ms.jit(fn)(arg).asnumpy()
    assert graph.shape == eager.shape and graph.dtype == eager.dtype
    scale = max(np.abs(eager).max(), 1e-30)
    assert np.abs(graph.astype(np.float64) - eager).max() / scale <= 1e-6


@pytest.mark.parametrize("name", ["group_norm", "softmax_bmm_attention", "conv2d", "conv3d", "conv_transpose2d",
                                  "upsample_fir_conv", "downsample_fir", "interpolate"])
def test_fp16_runs_on_backend_and_under_jit(name):
    fn, arg = CASES[name]
    if name == "softmax_bmm_attention":
        def fn(q):  # noqa: F811 - fp16 q, k, v together
            return ops.softmax_bmm_attention(q, K.astype(ms.float16), V.astype(ms.float16), BOOL_MASK, chunk_size=2)
        globals()["_fp16_attention"] = fn
    eager = fn(arg.astype(ms.float16))
    assert eager.dtype == ms.float16
    graph = ms.jit(fn)(arg.astype(ms.float16))
    np.testing.assert_allclose(graph.asnumpy().astype(np.float32), eager.asnumpy().astype(np.float32),
                               rtol=1e-3, atol=1e-3)
