"""float64 numpy references for msdiff.ops (torch semantics), written from the definitions."""
import math

import numpy as np


def conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Direct correlation; padding is (top, bottom, left, right)."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), padding[:2], padding[2:]))
    w = np.asarray(w, np.float64)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (wd - dw * (kw - 1) - 1) // sw + 1
    og = o // groups
    y = np.zeros((n, o, oh, ow))
    for g in range(groups):
        xg = x[:, g * cg:(g + 1) * cg]
        wg = w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xg[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw]
                y[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, wg[:, :, i, j])
    if b is not None:
        y += np.asarray(b, np.float64).reshape(1, -1, 1, 1)
    return y


def conv3d(x, w, b=None, stride=(1, 1, 1), padding=(0, 0, 0), dilation=(1, 1, 1), groups=1):
    """conv3d as a sum over temporal taps of conv2d."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (padding[0],) * 2, (0, 0), (0, 0)))
    w = np.asarray(w, np.float64)
    kt = w.shape[2]
    st, dt = stride[0], dilation[0]
    ot = (x.shape[2] - dt * (kt - 1) - 1) // st + 1
    frames = []
    for t in range(ot):
        acc = 0
        for i in range(kt):
            acc = acc + conv2d(x[:, :, t * st + i * dt], w[:, :, i], None, stride[1:],
                               (padding[1], padding[1], padding[2], padding[2]), dilation[1:], groups)
        frames.append(acc)
    y = np.stack(frames, axis=2)
    if b is not None:
        y += np.asarray(b, np.float64).reshape(1, -1, 1, 1, 1)
    return y


def conv_transpose2d(x, w, b=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), groups=1,
                     dilation=(1, 1)):
    """Scatter definition: each input pixel adds weight * value into the (dilated) output window."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = c // groups
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    fh = (h - 1) * sh + dh * (kh - 1) + 1 + output_padding[0]
    fw = (wd - 1) * sw + dw * (kw - 1) + 1 + output_padding[1]
    full = np.zeros((n, og * groups, fh, fw))
    for g in range(groups):
        xg = x[:, g * cg:(g + 1) * cg]
        wg = w[g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                contrib = np.einsum("nchw,co->nohw", xg, wg[:, :, i, j])
                full[:, g * og:(g + 1) * og, i * dh:i * dh + (h - 1) * sh + 1:sh,
                     j * dw:j * dw + (wd - 1) * sw + 1:sw] += contrib
    y = full[:, :, ph:fh - ph, pw:fw - pw]
    if b is not None:
        y = y + np.asarray(b, np.float64).reshape(1, -1, 1, 1)
    return y


def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    """Upsample by zero insertion, pad (negative crops), convolve with the (flipped) FIR, subsample."""
    x = np.asarray(x, np.float64)
    k = np.asarray(kernel, np.float64)
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * up, w * up))
    u[:, :, ::up, ::up] = x
    p0, p1 = pad
    u = np.pad(u, ((0, 0), (0, 0), (max(p0, 0), max(p1, 0)), (max(p0, 0), max(p1, 0))))
    u = u[:, :, max(-p0, 0):u.shape[2] - max(-p1, 0), max(-p0, 0):u.shape[3] - max(-p1, 0)]
    kh, kw = k.shape
    flipped = k[::-1, ::-1]
    oh, ow = u.shape[2] - kh + 1, u.shape[3] - kw + 1
    y = np.zeros((n, c, oh, ow))
    for i in range(kh):
        for j in range(kw):
            y += flipped[i, j] * u[:, :, i:i + oh, j:j + ow]
    return y[:, :, ::down, ::down]


def fir_kernel(kernel, factor, gain):
    k = np.asarray([1.0] * factor if kernel is None else kernel, np.float64)
    if k.ndim == 1:
        k = np.outer(k, k)
    return k / k.sum() * gain


def upsample_fir(x, weight=None, kernel=None, factor=2, gain=1.0):
    """diffusers FirUpsample2D._upsample_2d, float64."""
    k = fir_kernel(kernel, factor, gain * factor ** 2)
    if weight is None:
        p = k.shape[0] - factor
        return upfirdn2d(x, k, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))
    w = np.asarray(weight, np.float64)
    o, ci, kh, kw = w.shape
    groups = x.shape[1] // ci
    wt = w.reshape(groups, -1, ci, kh, kw)[:, :, :, ::-1, ::-1].transpose(0, 2, 1, 3, 4).reshape(groups * ci, -1, kh, kw)
    y = conv_transpose2d(x, wt, stride=(factor, factor), groups=groups)
    p = (k.shape[0] - factor) - (kw - 1)
    return upfirdn2d(y, k, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))


def downsample_fir(x, weight=None, kernel=None, factor=2, gain=1.0):
    """diffusers FirDownsample2D._downsample_2d, float64."""
    k = fir_kernel(kernel, factor, gain)
    if weight is None:
        p = k.shape[0] - factor
        return upfirdn2d(x, k, down=factor, pad=((p + 1) // 2, p // 2))
    kw = np.asarray(weight).shape[3]
    p = (k.shape[0] - factor) + (kw - 1)
    y = upfirdn2d(x, k, pad=((p + 1) // 2, p // 2))
    return conv2d(y, weight, stride=(factor, factor))


def _source_index(out_len, in_len, scale_factor, align_corners):
    dst = np.arange(out_len, dtype=np.float64)
    if align_corners:
        return dst * ((in_len - 1) / (out_len - 1) if out_len > 1 else 0.0)
    scale = 1.0 / scale_factor if scale_factor is not None else in_len / out_len
    return np.maximum((dst + 0.5) * scale - 0.5, 0.0)


def interpolate(x, size, scale_factor=None, mode="nearest", align_corners=False):
    """torch F.interpolate nearest (floor rule) / bilinear, float64; scale_factor is (sh, sw) or None."""
    x = np.asarray(x, np.float64)
    out = x
    for axis, (o, s) in zip((2, 3), zip(size, scale_factor or (None, None))):
        n = x.shape[axis]
        if mode == "nearest":
            scale = 1.0 / s if s is not None else n / o
            idx = np.minimum(np.floor(np.arange(o) * scale).astype(int), n - 1)
            out = np.take(out, idx, axis=axis)
        else:
            src = _source_index(o, n, s, align_corners)
            i0 = np.minimum(np.floor(src).astype(int), n - 1)
            i1 = np.minimum(i0 + 1, n - 1)
            lam = (src - i0).reshape([-1 if a == axis else 1 for a in range(4)])
            out = np.take(out, i0, axis=axis) * (1 - lam) + np.take(out, i1, axis=axis) * lam
    return out


def group_norm(x, groups, weight=None, bias=None, eps=1e-5):
    x = np.asarray(x, np.float64)
    g = x.reshape(x.shape[0], groups, -1)
    y = ((g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + eps)).reshape(x.shape)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * np.asarray(weight, np.float64).reshape(shape)
    if bias is not None:
        y = y + np.asarray(bias, np.float64).reshape(shape)
    return y


def layer_norm(x, weight=None, bias=None, eps=1e-5):
    x = np.asarray(x, np.float64)
    y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def rms_norm(x, weight=None, eps=1e-6):
    x = np.asarray(x, np.float64)
    y = x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)
    return y if weight is None else y * weight


def global_response_norm(x, gamma, beta, eps=1e-6):
    x = np.asarray(x, np.float64)
    agg = np.sqrt((x * x).sum(axis=(1, 2), keepdims=True))
    nx = agg / (agg.mean(-1, keepdims=True) + eps)
    return gamma * (x * nx) + beta + x


def attention(q, k, v, mask=None, scale=None):
    q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    s = np.exp(s - s.max(-1, keepdims=True))
    return (s / s.sum(-1, keepdims=True)) @ v


def erf(x):
    return np.vectorize(math.erf)(x)


def gelu(x, approximate="none"):
    x = np.asarray(x, np.float64)
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def silu(x):
    x = np.asarray(x, np.float64)
    return x / (1 + np.exp(-x))


def timestep_embedding(t, dim, flip_sin_to_cos=False, downscale_freq_shift=1.0, scale=1.0, max_period=10000):
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half) / (half - downscale_freq_shift))
    args = np.asarray(t, np.float64)[:, None] * freqs[None] * scale
    emb = np.concatenate([np.cos(args), np.sin(args)] if flip_sin_to_cos else [np.sin(args), np.cos(args)], -1)
    if dim % 2:
        emb = np.pad(emb, ((0, 0), (0, 1)))
    return emb
