"""Normalisations. Statistics are always computed in fp32; the result is cast back to x.dtype."""
import mindspore as ms
from mindspore import Tensor, mint, ops

from . import _backend
from ._checks import check


def group_norm(x: Tensor, groups: int, weight: Tensor = None, bias: Tensor = None,
               eps: float = 1e-5) -> Tensor:
    """fp32 compute, output in x.dtype: GroupNorm over (C/groups, *spatial) of x[b, c, ...]."""
    check(x.ndim >= 2, "group_norm", f"x must be [b, c, ...], got shape {x.shape}")
    b, c = x.shape[0], x.shape[1]
    check(c % groups == 0, "group_norm", f"channels {c} not divisible by groups {groups}")
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
