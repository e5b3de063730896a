"""Convolutions and linear maps, computed in the input dtype (fp16 accumulates in fp32 on CPU)."""
from mindspore import Tensor, ops

from ._checks import check


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def linear(x: Tensor, weight: Tensor, bias: Tensor = None) -> Tensor:
    """x @ weight^T + bias for x[..., in], weight[out, in]."""
    check(x.shape[-1] == weight.shape[1], "linear",
          f"x has {x.shape[-1]} features, weight expects {weight.shape[1]} (weight shape {weight.shape})")
    y = ops.matmul(x, weight.swapaxes(0, 1))
    if bias is not None:
        y = y + bias
    return y


def conv2d(x: Tensor, weight: Tensor, bias: Tensor = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """2-D cross-correlation of x[b, c, h, w] with weight[o, c/groups, kh, kw] (torch semantics)."""
    check(x.ndim == 4, "conv2d", f"x must be [b, c, h, w], got shape {x.shape}")
    check(x.shape[1] == weight.shape[1] * groups, "conv2d",
          f"x has {x.shape[1]} channels, weight {weight.shape} with groups={groups} expects "
          f"{weight.shape[1] * groups}")
    ph, pw = _pair(padding)
    y = ops.conv2d(x, weight, pad_mode="pad", padding=(ph, pw), stride=_pair(stride),
                   dilation=_pair(dilation), groups=groups)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return y
