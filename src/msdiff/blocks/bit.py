"""BiT (Big Transfer) ResNet blocks as in transformers' `BitModel` with `layer_type="bottleneck"` and TF "SAME"
padding: the convolutional backbone of the hybrid ViT in DPT-Hybrid (Intel/dpt-hybrid-midas).

Weight standardisation (Kolesnikov et al. 2020, BiT; Qiao et al. 2019) and the group norms compute in fp32.
Parameter names equal transformers' (`embedder.convolution`, `encoder.stages.{s}.layers.{l}.conv1`, ...).
"""
import math

import mindspore as ms
from mindspore import Parameter, Tensor, nn
from mindspore.common.initializer import Uniform, initializer

from .. import ops
from .layers import GroupNorm


def make_div(value: float, divisor: int = 8) -> int:
    """transformers' make_div: round a channel count to a multiple of `divisor`, never below 90% of it."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new_value + divisor if new_value < 0.9 * value else new_value


def same_padding(length: int, kernel: int, stride: int) -> tuple:
    """TF "SAME" padding (before, after) of one axis: the output has ceil(length / stride) positions."""
    total = max((math.ceil(length / stride) - 1) * stride + kernel - length, 0)
    return total // 2, total - total // 2


def pad_same(x: Tensor, kernel: int, stride: int) -> Tensor:
    """Zero-pad x[b, c, h, w] for a TF "SAME" window (an odd kernel at stride 1 pads symmetrically)."""
    top, bottom = same_padding(x.shape[2], kernel, stride)
    left, right = same_padding(x.shape[3], kernel, stride)
    if top or bottom or left or right:
        x = ops.pad(x, (left, right, top, bottom))
    return x


def standardize_weight(weight: Tensor, eps: float) -> Tensor:
    """fp32 compute, output in weight.dtype: each output filter minus its mean, over sqrt(biased variance + eps)."""
    w = weight.astype(ms.float32)
    mean = w.mean(axis=(1, 2, 3), keep_dims=True)
    var = ms.ops.square(w - mean).mean(axis=(1, 2, 3), keep_dims=True)
    return ((w - mean) * ms.ops.rsqrt(var + eps)).astype(weight.dtype)


class WeightStandardizedConv2d(nn.Cell):
    """Bias-free conv with per-filter weight standardisation and TF "SAME" padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, eps: float = 1e-8,
                 dtype=ms.float32):
        super().__init__()
        self.kernel_size, self.stride, self.eps = kernel_size, stride, eps
        bound = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = Parameter(initializer(Uniform(bound), shape, dtype), name="weight")

    def construct(self, x: Tensor) -> Tensor:
        x = pad_same(x, self.kernel_size, self.stride)
        return ops.conv2d(x, standardize_weight(self.weight, self.eps), stride=self.stride)


class GroupNormActivation(GroupNorm):
    """GroupNorm (fp32 statistics, eps 1e-5), then ReLU unless `activation` is False."""

    def __init__(self, groups: int, channels: int, activation: bool = True, dtype=ms.float32):
        super().__init__(groups, channels, eps=1e-5, dtype=dtype)
        self.activation = activation

    def construct(self, x: Tensor) -> Tensor:
        x = super().construct(x)
        return ms.ops.relu(x) if self.activation else x


class DownsampleConv(nn.Cell):
    """Shortcut projection: 1x1 standardised conv (strided) and a group norm without activation."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, groups: int, dtype=ms.float32):
        super().__init__()
        self.conv = WeightStandardizedConv2d(in_channels, out_channels, 1, stride=stride, dtype=dtype)
        self.norm = GroupNormActivation(groups, out_channels, activation=False, dtype=dtype)

    def construct(self, x: Tensor) -> Tensor:
        return self.norm(self.conv(x))


class BottleneckLayer(nn.Cell):
    """ResNet v1.5 bottleneck (1x1, strided 3x3, 1x1) with standardised convs; ReLU after the residual sum."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, groups: int, first: bool,
                 dtype=ms.float32):
        super().__init__()
        mid = make_div(out_channels * 0.25)
        self.downsample = DownsampleConv(in_channels, out_channels, stride, groups, dtype=dtype) if first else None
        self.conv1 = WeightStandardizedConv2d(in_channels, mid, 1, dtype=dtype)
        self.norm1 = GroupNormActivation(groups, mid, dtype=dtype)
        self.conv2 = WeightStandardizedConv2d(mid, mid, 3, stride=stride, dtype=dtype)
        self.norm2 = GroupNormActivation(groups, mid, dtype=dtype)
        self.conv3 = WeightStandardizedConv2d(mid, out_channels, 1, dtype=dtype)
        self.norm3 = GroupNormActivation(groups, out_channels, activation=False, dtype=dtype)

    def construct(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        h = self.norm1(self.conv1(x))
        h = self.norm2(self.conv2(h))
        h = self.norm3(self.conv3(h))
        return ms.ops.relu(h + shortcut)


class BitStage(nn.Cell):
    """`depth` bottleneck layers; the first one changes width and stride."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, depth: int, groups: int,
                 dtype=ms.float32):
        super().__init__()
        self.layers = nn.CellList([
            BottleneckLayer(in_channels if i == 0 else out_channels, out_channels, stride if i == 0 else 1, groups,
                            first=i == 0, dtype=dtype) for i in range(depth)])

    def construct(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def max_pool_same_3x3_s2(x: Tensor) -> Tensor:
    """3x3 / stride 2 max pool after zero "SAME" padding (the stem's inputs are ReLU outputs, >= 0)."""
    x = pad_same(x, 3, 2)
    h, w = (x.shape[2] - 3) // 2 + 1, (x.shape[3] - 3) // 2 + 1
    out = None
    for dy in range(3):
        for dx in range(3):
            window = x[:, :, dy:dy + 2 * h - 1:2, dx:dx + 2 * w - 1:2]
            out = window if out is None else ms.ops.maximum(out, window)
    return out


class BitEmbeddings(nn.Cell):
    """Stem: 7x7 / stride 2 standardised conv, group norm + ReLU, 3x3 / stride 2 max pool."""

    def __init__(self, in_channels: int, channels: int, groups: int, dtype=ms.float32):
        super().__init__()
        self.convolution = WeightStandardizedConv2d(in_channels, channels, 7, stride=2, dtype=dtype)
        self.norm = GroupNormActivation(groups, channels, dtype=dtype)

    def construct(self, x: Tensor) -> Tensor:
        return max_pool_same_3x3_s2(self.norm(self.convolution(x)))


class BitEncoder(nn.Cell):
    """Stages of bottleneck layers (stride 1 for the first, 2 after); returns every stage's output."""

    def __init__(self, in_channels: int, widths: tuple, depths: tuple, groups: int, dtype=ms.float32):
        super().__init__()
        chans = (in_channels,) + tuple(widths)
        self.stages = nn.CellList([BitStage(chans[i], chans[i + 1], 1 if i == 0 else 2, d, groups, dtype=dtype)
                                   for i, d in enumerate(depths)])

    def construct(self, x: Tensor):
        outs = ()
        for stage in self.stages:
            x = stage(x)
            outs = outs + (x,)
        return outs


class BitBackbone(nn.Cell):
    """transformers' BitBackbone (bottleneck, SAME padding) as `bit.embedder` + `bit.encoder`; returns stage outputs."""

    def __init__(self, in_channels: int, stem_channels: int, widths: tuple, depths: tuple, groups: int,
                 dtype=ms.float32):
        super().__init__()
        self.bit = BitModel(in_channels, stem_channels, widths, depths, groups, dtype=dtype)

    def construct(self, x: Tensor):
        return self.bit(x)


class BitModel(nn.Cell):
    """Stem and encoder; the stage outputs (no final norm: the bottleneck BiT has none)."""

    def __init__(self, in_channels: int, stem_channels: int, widths: tuple, depths: tuple, groups: int,
                 dtype=ms.float32):
        super().__init__()
        self.embedder = BitEmbeddings(in_channels, stem_channels, groups, dtype=dtype)
        self.encoder = BitEncoder(stem_channels, widths, depths, groups, dtype=dtype)

    def construct(self, x: Tensor):
        return self.encoder(self.embedder(x))
