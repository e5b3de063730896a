"""Convolutions as matrix products (the fast CPU formulation).

MindSpore's CPU Conv2D runs at about 1 GFLOP/s; its CPU matmul at 300+ GFLOP/s. Here a
convolution is im2col (`ops.unfold`, a single fast kernel) followed by one matmul against the
torch-layout weight reshaped to [out, in * kh * kw], which yields NCHW output directly (no
transposes). 1x1 convolutions are a plain matmul. Everything runs in fp32 (fp16 inputs are
upcast once and the result cast back), so fp16 accumulates in fp32.
Large inputs are split into bands of output rows so the column matrix stays bounded.
"""
import mindspore as ms
from mindspore import Tensor, mint, ops
from mindspore.ops import constexpr

# Largest im2col matrix built at once, in elements (fp32: 128 MiB).
COLS_BUDGET = 1 << 25


@constexpr
def _range(start: int, stop: int) -> tuple:
    return tuple(range(start, stop))


def _zero_rows(x: Tensor, top: int, bottom: int) -> Tensor:
    """x[b, c, h, w] with zero rows above and below, as one Concat: MindSpore 2.10's CPU PadV3 is ~10x slower
    (2x960x64x64 fp32, PyNative, best of 7: 296 vs 30 ms; it was 250 ms of a graph-mode SD-1.5 UNet step)."""
    b, c, _, w = x.shape
    parts = ([ops.zeros((b, c, top, w), x.dtype)] if top else []) + [x] + (
        [ops.zeros((b, c, bottom, w), x.dtype)] if bottom else [])
    return ops.cat(parts, 2) if len(parts) > 1 else x


def out_size(size: int, k: int, s: int, p0: int, p1: int, d: int) -> int:
    """Output length of a strided, dilated correlation over a padded axis."""
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def _grouped_matmul(w2: Tensor, cols: Tensor, groups: int) -> Tensor:
    """w2[o, k] (o, k split in groups) @ cols[b, groups * k', l] -> [b, o, l]."""
    b, kk, l = cols.shape
    o = w2.shape[0]
    if groups == 1:
        if b == 1:
            return ops.matmul(w2, cols.reshape(kk, l)).reshape(1, o, l)
        if o > l:
            # weight larger than a sample's output: one 2-D matmul over every sample's columns, since the broadcast
            # batch matmul [o, k] @ [b, k, l] materialises the weight once per sample on MindSpore's CPU backend
            # (BroadcastTo: 34% of a graph-mode SD-1.5 UNet step; > 2x diffusers' memory for SVD's 28 frame rows).
            # Where l >= o (high-resolution layers) the weight copy is cheaper than transposing the columns.
            # SD-1.5 UNet step b2 fp32, quiet, in-process A/B (broadcast everywhere / transpose everywhere / this):
            # 32x32 graph 2.74 / 2.26 / 1.99 s, PyNative 6.62 / 3.29 / 2.99 s; 64x64 graph 9.44 / 10.90 / 8.76 s.
            c2 = mint.transpose(cols, 0, 1).reshape(kk, b * l)
            return mint.transpose(ops.matmul(w2, c2).reshape(o, b, l), 0, 1)
        return ops.matmul(w2, cols)
    wg = w2.reshape(groups, o // groups, w2.shape[1])
    y = ops.matmul(wg, cols.reshape(b, groups, kk // groups, l))
    return y.reshape(b, o, l)


def conv2d_matmul(x: Tensor, weight: Tensor, stride, padding, dilation, groups: int) -> Tensor:
    """fp32 im2col-matmul correlation of fp32 x[b, c, h, w] with weight[o, c/g, kh, kw].

    padding is (top, bottom, left, right); stride, dilation are (h, w) pairs. No bias.
    """
    b, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    sh, sw = stride
    pt, pb, pl, pr = padding
    dh, dw = dilation
    oh = out_size(h, kh, sh, pt, pb, dh)
    ow = out_size(w, kw, sw, pl, pr, dw)
    w2 = weight.reshape(o, cg * kh * kw)
    if kh == 1 and kw == 1 and pt == pb == pl == pr == 0:
        if sh != 1 or sw != 1:
            x = x[:, :, ::sh, ::sw]
        y = _grouped_matmul(w2, x.reshape(b, c, oh * ow), groups)
        return y.reshape(b, o, oh, ow)
    if (pt, pl) != (pb, pr):
        x = ops.pad(x, (pl, pr, pt, pb))
        pt = pb = pl = pr = 0
    rows = max(1, COLS_BUDGET // max(1, b * c * kh * kw * ow))
    if rows >= oh:
        cols = ops.unfold(x, kernel_size=(kh, kw), dilation=(dh, dw), padding=(pt, pl), stride=(sh, sw))
        return _grouped_matmul(w2, cols, groups).reshape(b, o, oh, ow)
    # Rows padded once (Concat), columns by Im2Col itself (pl == pr here); each band's rows as a Gather (a
    # slice of axis 2 is ~15x slower in PyNative: 2x960x32x64 of 2x960x64x64, 114 vs 8 ms).
    x = _zero_rows(x, pt, pb)
    bands = []
    for r0 in range(0, oh, rows):
        r1 = min(oh, r0 + rows)
        xb = ops.gather(x, Tensor(_range(r0 * sh, (r1 - 1) * sh + dh * (kh - 1) + 1), ms.int32), 2)
        cols = ops.unfold(xb, kernel_size=(kh, kw), dilation=(dh, dw), padding=(0, pl), stride=(sh, sw))
        bands.append(_grouped_matmul(w2, cols, groups).reshape(b, o, r1 - r0, ow))
    return ops.cat(bands, axis=2)


def conv_transpose2d_matmul(x: Tensor, weight: Tensor, stride, padding, output_padding, dilation,
                            groups: int) -> Tensor:
    """fp32 transposed convolution as matmul + col2im (`ops.fold`); weight[c, o/g, kh, kw].

    Every product is needed (no zero insertion), and fold sums the overlapping taps.
    """
    b, c, h, w = x.shape
    _, og, kh, kw = weight.shape
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + output_padding[0] + 1
    ow = (w - 1) * sw - 2 * pw + dw * (kw - 1) + output_padding[1] + 1
    cg = c // groups
    # [g, c/g, o/g*kh*kw] -> [g, o/g*kh*kw, c/g] so that cols[b, g*o/g*kh*kw, h*w] is group-major.
    wt = weight.reshape(groups, cg, og * kh * kw).swapaxes(1, 2).reshape(groups * og * kh * kw, cg)
    cols = _grouped_matmul(wt, x.reshape(b, c, h * w), groups)
    size = Tensor([oh, ow], ms.int32)
    return ops.fold(cols, size, kernel_size=(kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))
