"""Bad input raises ValueError naming the op and what it expected, not a kernel stack trace."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from msdiff import ops


def z(*shape, dtype=ms.float32):
    return Tensor(np.zeros(shape, np.float32)).astype(dtype)


@pytest.mark.parametrize("call, pattern", [
    (lambda: ops.group_norm(z(1, 6, 4, 4), 4), r"group_norm: channels 6 not divisible by groups 4"),
    (lambda: ops.softmax_bmm_attention(z(1, 2, 5, 8), z(1, 2, 5, 4), z(1, 2, 5, 4)),
     r"softmax_bmm_attention: q and k head dims differ: 8 vs 4"),
    (lambda: ops.attention(z(1, 2, 5, 8), z(1, 2, 6, 8), z(1, 2, 5, 8)), r"softmax_bmm_attention: k and v lengths"),
    (lambda: ops.softmax_bmm_attention(z(2, 4), z(2, 4), z(2, 4, dtype=ms.float16)),
     r"softmax_bmm_attention: q, k, v must share a dtype"),
    (lambda: ops.conv2d(z(3, 8, 8), z(4, 3, 3, 3)), r"conv2d: x must be \[b, c, h, w\] \(rank 4\), got shape \(3, 8, 8\)"),
    (lambda: ops.conv2d(z(1, 4, 8, 8), z(4, 3, 3, 3)), r"conv2d: x has 4 channels; weight must be \[o, 4, kh, kw\]"),
    (lambda: ops.conv2d(z(1, 6, 8, 8), z(4, 3, 3, 3), groups=4), r"conv2d: x channels 6 not divisible by groups 4"),
    (lambda: ops.conv2d(z(1, 3, 2, 2), z(4, 3, 3, 3)), r"conv2d: kernel .* larger than padded input"),
    (lambda: ops.conv3d(z(1, 3, 8, 8), z(4, 3, 1, 3, 3)), r"conv3d: x must be \[b, c, t, h, w\]"),
    (lambda: ops.conv_transpose2d(z(1, 4, 8, 8), z(3, 2, 3, 3)), r"conv_transpose2d: x has 4 channels; weight must be \[4,"),
    (lambda: ops.conv_transpose2d(z(1, 4, 8, 8), z(4, 2, 3, 3), stride=2, output_padding=2),
     r"conv_transpose2d: output_padding \(2, 2\) must be smaller than stride"),
    (lambda: ops.linear(z(2, 5), z(3, 4)), r"linear: x has 5 features, weight must be \[out, 5\]"),
    (lambda: ops.upfirdn2d(z(1, 2, 4, 4), np.ones(4)), r"upfirdn2d: kernel must be 2-D"),
    (lambda: ops.upsample_fir(z(1, 4, 4, 4), z(4, 2, 3, 3)), r"upsample_fir: weight must be a square conv2d weight \[o, 4"),
    (lambda: ops.downsample_fir(z(4, 4, 4), None), r"downsample_fir: x must be \[b, c, h, w\]"),
    (lambda: ops.interpolate(z(1, 2, 4, 4), size=(8, 8), mode="bicubic"), r"interpolate: unsupported mode 'bicubic'"),
    (lambda: ops.interpolate(z(1, 2, 4, 4)), r"interpolate: give exactly one of size, scale_factor"),
    (lambda: ops.gelu(z(2), approximate="fast"), r"gelu: approximate must be 'none' or 'tanh'"),
])
def test_bad_input_names_op_and_expectation(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def f_bad_groups(x):
    return ops.group_norm(x, 4)


def test_bad_input_error_also_under_jit():
    with pytest.raises(ValueError, match=r"group_norm: channels 6 not divisible by groups 4"):
        ms.jit(f_bad_groups)(z(1, 6, 4, 4))
