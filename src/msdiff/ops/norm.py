"""Normalisations. Statistics are always computed in fp32; the result is cast back to x.dtype."""
import mindspore as ms
from mindspore import Tensor, mint, ops

from . import _backend
from ._checks import check


# Most elements per BatchNorm channel when taking group statistics (its fp32 sums stay short).
_BN_STATS_CHUNK = 8192
_BN_TRAIN = ops.BatchNorm(is_training=True, epsilon=1e-5)


def _stats_chunk(n: int) -> int:
    """The largest divisor of n that is at most _BN_STATS_CHUNK."""
    for k in range(-(-n // _BN_STATS_CHUNK), n + 1):
        if n % k == 0:
            return n // k
    return 1


def _group_norm_batchnorm(x: Tensor, groups: int, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """fp32 CPU group_norm from per-channel kernels on views of x: MindSpore's CPU GroupNorm kernel is slow,
    and so are its broadcasting elementwise ops; BiasAdd and BatchNorm's per-channel passes are not.

    1. centre: BiasAdd of minus the group means (ReduceMean) on the [1, b*g, n, 1] view (the statistics
       below need centred data: the training BatchNorm kernel takes the variance as E[x^2] - mean^2, which
       alone loses 2e-5 rel L2 at mean 300);
    2. statistics: training BatchNorm of the centred data split in chunks of <= 8192 elements per channel
       (its per-channel mean and biased variance are outputs 3 and 4 on CPU; short chunks keep its fp32 sums
       accurate: one channel per group loses 3e-6 on 1x128x256x256), combined per group;
    3. normalise + affine: inference BatchNorm of the [1, b*c, n/cpg, 1] view with the residual group mean,
       gamma = weight * rstd and beta = bias.
    Within 1e-7 (rel L2) of the float64 group norm at mean 0 to 300 (MindSpore's GroupNorm kernel: 2.5e-8).
    """
    b, c = x.shape[0], x.shape[1]
    bg, cpg = b * groups, c // groups
    n = x.size // bg
    chunk = _stats_chunk(n)
    k = n // chunk
    xf = x if x.dtype == ms.float32 else x.astype(ms.float32)
    xc = ops.bias_add(xf.reshape(1, bg, n, 1), -xf.reshape(bg, n).mean(-1))
    buf = ops.zeros((bg * k,), ms.float32)  # scale, offset and running statistics: the kernel updates the latter
    stats = _BN_TRAIN(xc.reshape(1, bg * k, chunk, 1), buf, buf, buf, buf)
    mean, var = stats[3], stats[4]
    if k > 1:
        mean_k = mean.reshape(bg, k)
        mean = mean_k.mean(-1)
        var = (var.reshape(bg, k) + ops.square(mean_k)).mean(-1) - ops.square(mean)
    rstd = ops.rsqrt(var + eps).reshape(b, groups, 1)
    if weight is None:
        gamma = ops.broadcast_to(rstd, (b, groups, cpg)).reshape(b * c)
    else:
        gamma = (rstd * weight.astype(ms.float32).reshape(1, groups, cpg)).reshape(b * c)
    beta = ops.zeros((b * c,), ms.float32) if weight is None or bias is None else ops.tile(
        bias.astype(ms.float32), (b,))
    mean_bc = ops.broadcast_to(mean.reshape(b, groups, 1), (b, groups, cpg)).reshape(b * c)
    y = ops.batch_norm(xc.reshape(1, b * c, -1, 1), mean_bc, ops.full((b * c,), 1.0 - eps, dtype=ms.float32),
                       gamma, beta, training=False, eps=eps).reshape(x.shape)
    return y if y.dtype == x.dtype else y.astype(x.dtype)


def group_norm(x: Tensor, groups: int, weight: Tensor = None, bias: Tensor = None,
               eps: float = 1e-5) -> Tensor:
    """fp32 compute, output in x.dtype: GroupNorm over (C/groups, *spatial) of x[b, c, ...]."""
    check(x.ndim >= 2, "group_norm", f"x must be [b, c, ...], got shape {x.shape}")
    b, c = x.shape[0], x.shape[1]
    check(c % groups == 0, "group_norm", f"channels {c} not divisible by groups {groups}")
    if _backend.IS_CPU and x.size >= _backend.CPU_GROUP_NORM_BATCHNORM_MIN:
        return _group_norm_batchnorm(x, groups, weight, bias, eps)
    if _backend.IS_CPU:
        # MindSpore's CPU GroupNorm kernel: 4x faster than the composed ops and exact to ~4e-8 even
        # at mean 3000 (the composed fp32 two-pass form loses ~4e-5 there).
        wf = None if weight is None else weight.astype(ms.float32)
        bf = None if bias is None or weight is None else bias.astype(ms.float32)
        y = mint.nn.functional.group_norm(x if x.dtype == ms.float32 else x.astype(ms.float32), groups, wf, bf, eps)
        return y if y.dtype == x.dtype else y.astype(x.dtype)
    xf = x.astype(ms.float32).reshape(b, groups, -1)
    mean = xf.mean(axis=-1, keep_dims=True)
    var = ops.square(xf - mean).mean(axis=-1, keep_dims=True)
    y = ((xf - mean) * ops.rsqrt(var + eps)).reshape(x.shape)
    if weight is not None:
        shape = (1, c) + (1,) * (x.ndim - 2)
        y = y * weight.astype(ms.float32).reshape(shape)
        if bias is not None:
            y = y + bias.astype(ms.float32).reshape(shape)
    return y.astype(x.dtype)


def layer_norm(x: Tensor, weight: Tensor = None, bias: Tensor = None, eps: float = 1e-5) -> Tensor:
    """fp32 compute, output in x.dtype: LayerNorm over the last axis."""
    if weight is not None:
        check(weight.shape[-1] == x.shape[-1], "layer_norm",
              f"weight has {weight.shape[-1]} features, x has {x.shape[-1]}")
    if _backend.IS_CPU:
        # MindSpore's CPU LayerNorm kernel: ~9x faster than the composed ops, same fp32 accuracy.
        d = x.shape[-1]
        gamma = ops.ones((d,), ms.float32) if weight is None else weight.astype(ms.float32)
        beta = ops.zeros((d,), ms.float32) if bias is None else bias.astype(ms.float32)
        y = ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)(
            x if x.dtype == ms.float32 else x.astype(ms.float32), gamma, beta)[0]
        return y if y.dtype == x.dtype else y.astype(x.dtype)
    xf = x.astype(ms.float32)
    mean = xf.mean(axis=-1, keep_dims=True)
    var = ops.square(xf - mean).mean(axis=-1, keep_dims=True)
    y = (xf - mean) * ops.rsqrt(var + eps)
    if weight is not None:
        y = y * weight.astype(ms.float32)
    if bias is not None:
        y = y + bias.astype(ms.float32)
    return y.astype(x.dtype)


def rms_norm(x: Tensor, weight: Tensor = None, eps: float = 1e-6) -> Tensor:
    """fp32 compute, output in x.dtype: RMSNorm over the last axis."""
    xf = x.astype(ms.float32)
    y = xf * ops.rsqrt(ops.square(xf).mean(axis=-1, keep_dims=True) + eps)
    if weight is not None:
        y = y * weight.astype(ms.float32)
    return y.astype(x.dtype)


def global_response_norm(x: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-6) -> Tensor:
    """fp32 compute, output in x.dtype: ConvNeXt-V2 global response norm of channels-last x[b, h, w, c]."""
    check(x.ndim == 4, "global_response_norm", f"x must be [b, h, w, c], got shape {x.shape}")
    xf = x.astype(ms.float32)
    agg = ops.sqrt(ops.square(xf).sum(axis=(1, 2), keepdims=True))
    nx = agg / (agg.mean(axis=-1, keep_dims=True) + eps)
    y = gamma.astype(ms.float32) * (xf * nx) + beta.astype(ms.float32) + xf
    return y.astype(x.dtype)
