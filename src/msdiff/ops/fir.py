"""FIR resampling of score-SDE / NCSN++ nets (Song et al. 2021; StyleGAN2's upfirdn2d), in fp32.

The FIR taps are applied as shifted, strided slices of the (zero-upsampled, padded) input
multiplied by scalar taps and summed: exact fp32 arithmetic in the tap order, with no native
depthwise convolution kernel needed on any backend.
"""
import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor, ops

from ._checks import check
from .conv import conv2d, conv_transpose2d


def _kernel_taps(kernel) -> tuple:
    """(kernel as a 2-D fp32 source, kh, kw): a numpy array when given as data, else an fp32 Tensor."""
    if isinstance(kernel, Tensor):
        k = kernel.astype(ms.float32)
    else:
        k = np.asarray(kernel, dtype=np.float32)
    check(k.ndim == 2, "upfirdn2d", f"kernel must be 2-D [kh, kw], got shape {tuple(k.shape)}")
    return k, k.shape[0], k.shape[1]


def _upfirdn2d_fp32(x: Tensor, kernel, up: int, down: int, pad: tuple) -> Tensor:
    """upfirdn2d on fp32 x[b, c, h, w]; kernel is a numpy array or an fp32 Tensor."""
    k, kh, kw = _kernel_taps(kernel)
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = ops.pad(x, (0, up - 1, 0, 0, 0, up - 1)).reshape(b, c, h * up, w * up)
    p0, p1 = pad
    if max(p0, 0) or max(p1, 0):
        x = ops.pad(x, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
    if p0 < 0 or p1 < 0:
        x = x[:, :, max(-p0, 0):x.shape[2] - max(-p1, 0), max(-p0, 0):x.shape[3] - max(-p1, 0)]
    oh = (x.shape[2] - kh) // down + 1
    ow = (x.shape[3] - kw) // down + 1
    check(oh > 0 and ow > 0, "upfirdn2d", f"kernel {kh}x{kw} larger than the padded input {tuple(x.shape[2:])}")
    kf = k[::-1, ::-1] if not isinstance(k, Tensor) else ops.flip(k, (0, 1))
    factors = None if isinstance(k, Tensor) else _separable(kf)
    if factors is not None:
        # Rank-1 kernel (all of diffusers' FIR kernels): a vertical then a horizontal pass.
        col, row = factors
        t = _taps_sum(x, [(float(col[i]), i, 0) for i in range(kh)], oh, x.shape[3], down, 1)
        return _taps_sum(t, [(float(row[j]), 0, j) for j in range(kw)], oh, ow, 1, down)
    taps = []
    for i in range(kh):
        for j in range(kw):
            taps.append((kf[i, j] if isinstance(kf, Tensor) else float(kf[i, j]), i, j))
    return _taps_sum(x, taps, oh, ow, down, down)


def _separable(k: np.ndarray):
    """(col, row) with outer(col, row) == k up to fp32 rounding, or None."""
    i0, j0 = np.unravel_index(np.argmax(np.abs(k)), k.shape)
    if k[i0, j0] == 0:
        return None
    col = k[:, j0].astype(np.float64)
    row = k[i0, :].astype(np.float64) / float(k[i0, j0])
    if np.abs(np.outer(col, row) - k).max() > 1e-6 * np.abs(k).max():
        return None
    return col.astype(np.float32), row.astype(np.float32)


def _taps_sum(x: Tensor, taps: list, oh: int, ow: int, sh: int, sw: int) -> Tensor:
    """sum over (tap, i, j) of tap * x[:, :, i::sh, j::sw] cropped to [oh, ow]; zero taps skipped."""
    y = None
    for tap, i, j in taps:
        if not isinstance(tap, Tensor) and tap == 0.0:
            continue
        term = x[:, :, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw] * tap
        y = term if y is None else y + term
    if y is None:
        y = ops.zeros((x.shape[0], x.shape[1], oh, ow), ms.float32)
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
    wt = ops.flip(weight.astype(ms.float32), (2, 3)).swapaxes(0, 1)
    y = conv_transpose2d(xf, wt, None, stride=factor)
    p = (k.shape[0] - factor) - (kw - 1)
    y = _upfirdn2d_fp32(y, k, 1, 1, ((p + 1) // 2 + factor - 1, p // 2 + 1))
    return y.astype(x.dtype)


def downsample_fir(x: Float[Tensor, "b c h w"], weight: Float[Tensor, "o c k k"] = None, kernel=None,
                   factor: int = 2, gain: float = 1.0) -> Float[Tensor, "b o hf wf"]:
    """fp32 compute, output in x.dtype: FIR downsampling, optionally fused with a strided conv (diffusers FirDownsample2D).

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
    y = conv2d(y, weight.astype(ms.float32), None, stride=factor)
    return y.astype(x.dtype)
