"""FIR resampling of score-SDE / NCSN++ nets (Song et al. 2021; StyleGAN2's upfirdn2d), in fp32.

Separable kernels (all of diffusers') run as two banded matmuls, out = A_h x A_w^T; others as a
depthwise (transposed, for upsampling) conv through msdiff's conv ops. Never a zero-stuffed tensor.
"""
import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor, ops
from mindspore.ops import constexpr

from ._checks import check
from .conv import after, conv2d, conv_transpose2d


def _kernel_taps(kernel) -> tuple:
    """(kernel as a 2-D fp32 source, kh, kw): a numpy array when given as data, else an fp32 Tensor."""
    if isinstance(kernel, Tensor):
        k = kernel.astype(ms.float32)
    else:
        k = np.asarray(kernel, dtype=np.float32)
    check(k.ndim == 2, "upfirdn2d", f"kernel must be 2-D [kh, kw], got shape {tuple(k.shape)}")
    return k, k.shape[0], k.shape[1]


def _depthwise(k, kh: int, kw: int, c: int) -> Tensor:
    """The FIR kernel repeated per channel as an fp32 depthwise weight [c, 1, kh, kw]."""
    if isinstance(k, Tensor):
        return ops.broadcast_to(k.reshape(1, 1, kh, kw), (c, 1, kh, kw))
    return Tensor(np.ascontiguousarray(np.broadcast_to(k, (c, 1, kh, kw)), dtype=np.float32))


def _crop_or_pad(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """Pad (positive amounts) or crop (negative amounts) the spatial axes of x."""
    if max(top, bottom, left, right) > 0:
        x = ops.pad(x, (max(left, 0), max(right, 0), max(top, 0), max(bottom, 0)))
    if min(top, bottom, left, right) < 0:
        x = x[:, :, max(-top, 0):x.shape[2] - max(-bottom, 0), max(-left, 0):x.shape[3] - max(-right, 0)]
    return x


def _fir_matrix(taps: np.ndarray, n_in: int, n_out: int, up: int, down: int, p0: int) -> np.ndarray:
    """[n_out, n_in] matrix of 1-D upfirdn: out[n] = sum_t taps_flipped[t] * padded_upsampled[n * down + t]."""
    kf = taps[::-1]
    a = np.zeros((n_out, n_in), np.float64)
    for n in range(n_out):
        for m in range(n_in):
            t = m * up + p0 - n * down
            if 0 <= t < len(kf):
                a[n, m] = kf[t]
    return a


@constexpr
def _separable_plan(kernel: list, h: int, w: int, up: int, down: int, p0: int, oh: int, ow: int):
    """(A_h [oh, h], A_w^T [w, ow]) as nested tuples when the 2-D kernel is rank 1, else None (host side)."""
    k = np.array(kernel, np.float64)
    i0, j0 = np.unravel_index(np.argmax(np.abs(k)), k.shape)
    if k[i0, j0] == 0:
        return None
    col, row = k[:, j0], k[i0, :] / k[i0, j0]
    if np.abs(np.outer(col, row) - k).max() > 1e-6 * np.abs(k).max():
        return None
    a_h = _fir_matrix(col, h, oh, up, down, p0).astype(np.float32)
    a_wt = _fir_matrix(row, w, ow, up, down, p0).T.astype(np.float32)
    return tuple(tuple(float(v) for v in r) for r in a_h), tuple(tuple(float(v) for v in r) for r in a_wt)


def _upfirdn2d_fp32(x: Tensor, kernel, up: int, down: int, pad: tuple) -> Tensor:
    """upfirdn2d on fp32 x[b, c, h, w]; kernel is a numpy array or an fp32 Tensor.

    No zero-stuffed intermediate: up > 1 is a depthwise transposed conv (stride up) of x with the
    kernel, down > 1 a depthwise strided correlation with the flipped kernel, both through the
    conv ops (im2col/col2im matmuls on CPU, where strided slicing is slow).
    """
    k, kh, kw = _kernel_taps(kernel)
    b, c, h, w = x.shape
    p0, p1 = pad
    oh = (h * up + p0 + p1 - kh) // down + 1
    ow = (w * up + p0 + p1 - kw) // down + 1
    check(oh > 0 and ow > 0, "upfirdn2d", f"kernel {kh}x{kw} larger than the padded, upsampled input")
    if not isinstance(k, Tensor):
        plan = _separable_plan(k.tolist(), h, w, up, down, p0, oh, ow)
        if plan is not None:
            # Rank-1 kernel (all of diffusers' FIR kernels): out = A_h @ x @ A_w^T, two fast matmuls.
            a_h, a_wt = Tensor(plan[0], ms.float32), Tensor(plan[1], ms.float32)
            y = ops.matmul(a_h, x.reshape(b * c, h, w)).reshape(b * c * oh, w)
            return ops.matmul(y, a_wt).reshape(b, c, oh, ow)
    if up == 1:
        kf = k[::-1, ::-1] if not isinstance(k, Tensor) else ops.flip(k, (0, 1))
        return conv2d(_crop_or_pad(x, p0, p1, p0, p1), _depthwise(kf, kh, kw, c), None, stride=down, groups=c)
    # Full convolution of the zero-stuffed x with k is conv_transpose2d(x, k, stride=up), of length
    # (h - 1) * up + kh; upfirdn's padded window starts kh - 1 - p0 into it.
    y = conv_transpose2d(x, _depthwise(k, kh, kw, c), None, stride=up, groups=c)
    sh, sw = kh - 1 - p0, kw - 1 - p0
    y = _crop_or_pad(y, -sh, (oh - 1) * down + 1 + sh - ((h - 1) * up + kh),
                     -sw, (ow - 1) * down + 1 + sw - ((w - 1) * up + kw))
    if down > 1:
        y = y[:, :, ::down, ::down]
    return y


def upfirdn2d(x: Float[Tensor, "b c h w"], kernel, up: int = 1, down: int = 1,
              pad: tuple = (0, 0)) -> Float[Tensor, "b c oh ow"]:
    """fp32 compute, output in x.dtype: zero-upsample by `up`, pad (negative crops), FIR-filter, keep every `down`-th.

    Same result as diffusers' `upfirdn2d_native`: pad=(p0, p1) applies p0 before and p1 after
    on both spatial axes, and the kernel is convolved (flipped), not correlated.
    """
    check(x.ndim == 4, "upfirdn2d", f"x must be [b, c, h, w], got shape {x.shape}")
    check(isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1, "upfirdn2d",
          f"up and down must be ints >= 1, got up={up!r}, down={down!r}")
    y = _upfirdn2d_fp32(x.astype(ms.float32), kernel, up, down, tuple(pad))
    return y.astype(x.dtype)


def _fir_kernel(kernel, factor: int, gain: float) -> np.ndarray:
    """Normalised 2-D FIR kernel times gain; default [1] * factor (box filter). Done in fp32 like diffusers."""
    k = np.asarray([1] * factor if kernel is None else kernel, dtype=np.float32)
    if k.ndim == 1:
        k = np.outer(k, k)
    k = k / np.sum(k)
    return (k * np.float32(gain)).astype(np.float32)


def _check_fir(op: str, x: Tensor, weight: Tensor, factor: int) -> None:
    check(x.ndim == 4, op, f"x must be [b, c, h, w], got shape {x.shape}")
    check(isinstance(factor, int) and factor >= 1, op, f"factor must be an int >= 1, got {factor!r}")
    if weight is not None:
        check(weight.ndim == 4 and weight.shape[1] == x.shape[1] and weight.shape[2] == weight.shape[3], op,
              f"weight must be a square conv2d weight [o, {x.shape[1]}, k, k] (ungrouped, as in diffusers), "
              f"got {weight.shape}")


def upsample_fir(x: Float[Tensor, "b c h w"], weight: Float[Tensor, "o c k k"] = None, kernel=None,
                 factor: int = 2, gain: float = 1.0) -> Float[Tensor, "b o hf wf"]:
    """fp32 compute, output in x.dtype: FIR upsampling, optionally fused with a conv (diffusers FirUpsample2D).

    weight is the torch conv2d weight [o, c, k, k] (no bias); kernel is the FIR taps,
    1-D (separable) or 2-D, default [1] * factor (nearest).
    """
    _check_fir("upsample_fir", x, weight, factor)
    k = _fir_kernel(kernel, factor, gain * factor ** 2)
    xf = x.astype(ms.float32)
    if weight is None:
        p = k.shape[0] - factor
        y = _upfirdn2d_fp32(xf, k, factor, 1, ((p + 1) // 2 + factor - 1, p // 2))
        return y.astype(x.dtype)
    kw = weight.shape[3]
    # The conv's adjoint: transposed conv with the spatially flipped, in/out-swapped weight.
    wt = ops.flip(after(weight, xf).astype(ms.float32), (2, 3)).swapaxes(0, 1)
    y = conv_transpose2d(xf, wt, None, stride=factor)
    p = (k.shape[0] - factor) - (kw - 1)
    y = _upfirdn2d_fp32(y, k, 1, 1, ((p + 1) // 2 + factor - 1, p // 2 + 1))
    return y.astype(x.dtype)


def downsample_fir(x: Float[Tensor, "b c h w"], weight: Float[Tensor, "o c k k"] = None, kernel=None,
                   factor: int = 2, gain: float = 1.0) -> Float[Tensor, "b o hf wf"]:
    """fp32 compute, output in x.dtype: FIR downsampling, optionally fused with a strided conv (FirDownsample2D).

    weight is the torch conv2d weight [o, c, k, k] (no bias); kernel is the FIR taps,
    1-D (separable) or 2-D, default [1] * factor (average pooling).
    """
    _check_fir("downsample_fir", x, weight, factor)
    k = _fir_kernel(kernel, factor, gain)
    xf = x.astype(ms.float32)
    if weight is None:
        p = k.shape[0] - factor
        y = _upfirdn2d_fp32(xf, k, 1, factor, ((p + 1) // 2, p // 2))
        return y.astype(x.dtype)
    p = (k.shape[0] - factor) + (weight.shape[3] - 1)
    y = _upfirdn2d_fp32(xf, k, 1, 1, ((p + 1) // 2, p // 2))
    y = conv2d(y, after(weight, y).astype(ms.float32), None, stride=factor)
    return y.astype(x.dtype)
