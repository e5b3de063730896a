"""Convolutions and linear maps (torch semantics and weight layouts).

On CPU every convolution runs as im2col + matmul in fp32 (see `_matmul_conv`); elsewhere the
backend's native kernel runs in the input dtype (fp16 accumulating in fp32 on Ascend/GPU).
"""
import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, mint, ops

from . import _backend
from ._checks import check
from ._matmul_conv import conv2d_matmul, conv_transpose2d_matmul, out_size


def _tuple(v, n: int, op: str, name: str) -> tuple:
    if isinstance(v, int):
        return (v,) * n
    check(len(v) == n, op, f"{name} must be an int or {n} ints, got {v!r}")
    return tuple(int(i) for i in v)


def _to(t: Tensor, dtype) -> Tensor:
    return t if t.dtype == dtype else t.astype(dtype)


def _fp32(t: Tensor) -> Tensor:
    return _to(t, ms.float32)


def after(weight: Tensor, x: Tensor) -> Tensor:
    """`weight`, made to wait for `x`, before a copy of it is taken (a reshape or cast).

    A parameter-only op has no inputs to wait for, so MindSpore's graph executor runs all of them
    first and keeps every copy alive until its use: +1 weight copy for the SD UNet's convs (measured:
    +6 GB peak). Tied to the activation, each copy lives only around its matmul. PyNative: no cost.
    """
    return ops.depend(weight, x)


def _add_bias(y: Tensor, bias: Tensor) -> Tensor:
    """y + bias on axis 1. BiasAdd: MindSpore's CPU broadcasting add is ~25x slower for this."""
    if bias is None:
        return y
    return ops.bias_add(y, _to(bias, y.dtype))


_MATMUL_NT = ops.MatMul(transpose_b=True)


def linear(x: Float[Tensor, "... i"], weight: Float[Tensor, "o i"],
           bias: Float[Tensor, "o"] = None) -> Float[Tensor, "... o"]:
    """fp32 compute on CPU, input dtype elsewhere (fp16 accumulating in fp32): x @ weight^T + bias."""
    check(weight.ndim == 2 and x.shape[-1] == weight.shape[1], "linear",
          f"x has {x.shape[-1]} features, weight must be [out, {x.shape[-1]}], got {weight.shape}")
    dtype = x.dtype
    if _backend.IS_CPU and dtype != ms.float32:
        # CPU fp32 matmul is ~2.5x faster than fp16 there, and exact to fp32 accumulation.
        x, weight = x.astype(ms.float32), after(weight, x).astype(ms.float32)
        bias = None if bias is None else bias.astype(ms.float32)
    # MatMul(transpose_b) reads weight[out, in] in place; weight.T would copy it on every call.
    y = _add_bias(_MATMUL_NT(x.reshape(-1, x.shape[-1]), weight), bias)
    return _to(y.reshape(x.shape[:-1] + (weight.shape[0],)), dtype)


def _check_conv(op: str, x: Tensor, weight: Tensor, groups: int, nd: int, layout: str) -> None:
    check(x.ndim == nd + 2, op, f"x must be [{layout}] (rank {nd + 2}), got shape {x.shape}")
    check(weight.ndim == nd + 2, op, f"weight must have rank {nd + 2}, got shape {weight.shape}")
    check(groups >= 1 and x.shape[1] % groups == 0, op,
          f"x channels {x.shape[1]} not divisible by groups {groups}")


def _conv2d_padding(padding, weight: Tensor, dilation: tuple, stride: tuple) -> tuple:
    """torch padding (int, pair, 'valid', 'same') -> (top, bottom, left, right)."""
    if isinstance(padding, str):
        check(padding in ("valid", "same"), "conv2d", f"padding must be 'valid', 'same' or ints, got {padding!r}")
        if padding == "valid":
            return (0, 0, 0, 0)
        check(stride == (1, 1), "conv2d", "padding='same' needs stride 1")
        th, tw = dilation[0] * (weight.shape[2] - 1), dilation[1] * (weight.shape[3] - 1)
        return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    ph, pw = _tuple(padding, 2, "conv2d", "padding")
    return (ph, ph, pw, pw)


def conv2d(x: Float[Tensor, "b c h w"], weight: Float[Tensor, "o cg kh kw"], bias: Float[Tensor, "o"] = None,
           stride=1, padding=0, dilation=1, groups: int = 1) -> Float[Tensor, "b o oh ow"]:
    """fp32 compute on CPU (im2col matmul), native input-dtype kernel elsewhere; torch conv2d semantics."""
    _check_conv("conv2d", x, weight, groups, 2, "b, c, h, w")
    check(x.shape[1] == weight.shape[1] * groups and weight.shape[0] % groups == 0, "conv2d",
          f"x has {x.shape[1]} channels; weight must be [o, {x.shape[1] // groups}, kh, kw] with o divisible by "
          f"groups={groups}, got {weight.shape}")
    stride = _tuple(stride, 2, "conv2d", "stride")
    dilation = _tuple(dilation, 2, "conv2d", "dilation")
    pads = _conv2d_padding(padding, weight, dilation, stride)
    check(out_size(x.shape[2], weight.shape[2], stride[0], pads[0], pads[1], dilation[0]) > 0
          and out_size(x.shape[3], weight.shape[3], stride[1], pads[2], pads[3], dilation[1]) > 0, "conv2d",
          f"kernel {weight.shape[2:]} (dilation {dilation}) larger than padded input {x.shape[2:]}")
    if _backend.IS_CPU:
        y = conv2d_matmul(_fp32(x), _fp32(after(weight, x)), stride, pads, dilation, groups)
        return _to(_add_bias(y, None if bias is None else _fp32(bias)), x.dtype)
    if pads[0] != pads[1] or pads[2] != pads[3]:
        x = ops.pad(x, (pads[2], pads[3], pads[0], pads[1]))
        pads = (0, 0, 0, 0)
    y = ops.conv2d(x, weight, pad_mode="pad", padding=(pads[0], pads[2]), stride=stride, dilation=dilation,
                   groups=groups)
    return _add_bias(y, bias)


def temporal_conv(x: Float[Tensor, "b c t h w"], weight: Float[Tensor, "o c kt 1 1"], bias: Float[Tensor, "o"] = None,
                  padding: int = 0) -> Float[Tensor, "b o ot h w"]:
    """fp32 on CPU, input dtype elsewhere (fp16 accumulating in fp32; fp32 on every backend): a kt x 1 x 1
    convolution over frames as kt frame-shifted matmuls [o, c] @ x[b, c, frames * h * w], summed."""
    check(x.ndim == 5 and weight.ndim == 5 and weight.shape[3:] == (1, 1) and weight.shape[1] == x.shape[1],
          "temporal_conv", f"x must be [b, c, t, h, w] and weight [o, c, kt, 1, 1] (same c), got {x.shape} and "
          f"{weight.shape}")
    b, c, t, h, w = x.shape
    o, kt = weight.shape[0], weight.shape[2]
    ot = t + 2 * padding - kt + 1
    check(ot > 0, "temporal_conv", f"temporal kernel {kt} longer than padded input length {t}")
    dtype = x.dtype
    w2 = after(weight, x)
    if _backend.IS_CPU and dtype != ms.float32:
        x, w2 = x.astype(ms.float32), w2.astype(ms.float32)
    if padding:
        x = ops.pad(x, (0, 0, 0, 0, padding, padding))
    hw = h * w
    xs = x.reshape(b, c, -1)
    w2 = w2.reshape(o, c, kt)
    y = None
    for i in range(kt):
        yi = ops.matmul(w2[:, :, i], xs[:, :, i * hw:(i + ot) * hw])
        y = yi if y is None else y + yi
    y = _add_bias(y, None if bias is None else _to(bias, y.dtype))
    return _to(y.reshape(b, o, ot, h, w), dtype)


def conv3d(x: Float[Tensor, "b c t h w"], weight: Float[Tensor, "o cg kt kh kw"], bias: Float[Tensor, "o"] = None,
           stride=1, padding=0, dilation=1, groups: int = 1) -> Float[Tensor, "b o ot oh ow"]:
    """torch conv3d semantics. kt x 1 x 1 kernels (stride, dilation, groups 1; no spatial padding) run as
    `temporal_conv` on every backend (fp32 included); others: fp32 sum over kt of frame-batched conv2d on CPU,
    the native kernel elsewhere."""
    _check_conv("conv3d", x, weight, groups, 3, "b, c, t, h, w")
    check(x.shape[1] == weight.shape[1] * groups and weight.shape[0] % groups == 0, "conv3d",
          f"x has {x.shape[1]} channels; weight must be [o, {x.shape[1] // groups}, kt, kh, kw] with o divisible "
          f"by groups={groups}, got {weight.shape}")
    st, sh, sw = _tuple(stride, 3, "conv3d", "stride")
    pt, ph, pw = _tuple(padding, 3, "conv3d", "padding")
    dt, dh, dw = _tuple(dilation, 3, "conv3d", "dilation")
    b, c, t, h, w = x.shape
    o, kt = weight.shape[0], weight.shape[2]
    ot = out_size(t, kt, st, pt, pt, dt)
    check(ot > 0, "conv3d", f"temporal kernel {kt} (dilation {dt}) longer than padded input length {t}")
    if weight.shape[3:] == (1, 1) and (st, sh, sw, dt, dh, dw, ph, pw, groups) == (1, 1, 1, 1, 1, 1, 0, 0, 1):
        return temporal_conv(x, weight, bias, pt)
    if not _backend.IS_CPU:
        y = ops.conv3d(x, weight, pad_mode="pad", padding=(pt, ph, pw), stride=(st, sh, sw),
                       dilation=(dt, dh, dw), groups=groups)
        return _add_bias(y, bias)
    xf, wf = _fp32(x), _fp32(after(weight, x))
    if pt:
        xf = ops.pad(xf, (0, 0, 0, 0, pt, pt))
    y = None
    for i in range(kt):
        frames = xf[:, :, i * dt:i * dt + (ot - 1) * st + 1:st]
        frames = frames.swapaxes(1, 2).reshape(b * ot, c, h, w)
        yi = conv2d_matmul(frames, wf[:, :, i], (sh, sw), (ph, ph, pw, pw), (dh, dw), groups)
        y = yi if y is None else y + yi
    y = y.reshape((b, ot, o) + y.shape[2:]).swapaxes(1, 2)
    return _to(_add_bias(y, None if bias is None else _fp32(bias)), x.dtype)


def conv_transpose2d(x: Float[Tensor, "b c h w"], weight: Float[Tensor, "c og kh kw"], bias: Float[Tensor, "o"] = None,
                     stride=1, padding=0, output_padding=0, groups: int = 1,
                     dilation=1) -> Float[Tensor, "b o oh ow"]:
    """fp32 matmul + col2im off Ascend, native kernel on Ascend; torch conv_transpose2d (weight [in, out/g, kh, kw])."""
    _check_conv("conv_transpose2d", x, weight, groups, 2, "b, c, h, w")
    check(weight.shape[0] == x.shape[1], "conv_transpose2d",
          f"x has {x.shape[1]} channels; weight must be [{x.shape[1]}, out/groups, kh, kw], got {weight.shape}")
    stride = _tuple(stride, 2, "conv_transpose2d", "stride")
    padding = _tuple(padding, 2, "conv_transpose2d", "padding")
    output_padding = _tuple(output_padding, 2, "conv_transpose2d", "output_padding")
    dilation = _tuple(dilation, 2, "conv_transpose2d", "dilation")
    op_ok = (output_padding[0] < stride[0] or output_padding[0] < dilation[0]) and (
        output_padding[1] < stride[1] or output_padding[1] < dilation[1])
    check(op_ok, "conv_transpose2d",
          f"output_padding {output_padding} must be smaller than stride {stride} or dilation {dilation}")
    if _backend.IS_ASCEND:
        y = mint.nn.functional.conv_transpose2d(x, weight, None, stride, padding, output_padding, groups, dilation)
        return _add_bias(y, bias)
    y = conv_transpose2d_matmul(_fp32(x), _fp32(after(weight, x)), stride, padding, output_padding, dilation,
                                groups)
    return _to(_add_bias(y, None if bias is None else _fp32(bias)), x.dtype)
