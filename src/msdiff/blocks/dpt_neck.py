"""DPT's neck (Ranftl et al. 2021, "Vision Transformers for Dense Prediction"): reassemble ViT tokens into
image-like maps, then fuse the four scales coarse to fine (RefineNet-style residual conv units).

Parameter names equal transformers' `neck.*` (readout projections without their Sequential index).
Hybrid layout: stages 0 and 1 are BiT feature maps and pass through unchanged (identity reassemble).
"""
import mindspore as ms
from mindspore import Parameter, Tensor, nn
from mindspore.common.initializer import initializer

from .. import ops
from .layers import Conv2d, Linear


class BatchNorm2d(nn.Cell):
    """Inference BatchNorm over channels with running statistics; fp32 compute, output in x.dtype."""

    def __init__(self, channels: int, eps: float = 1e-5, dtype=ms.float32):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(initializer("ones", (channels,), dtype), name="weight")
        self.bias = Parameter(initializer("zeros", (channels,), dtype), name="bias")
        self.running_mean = Parameter(initializer("zeros", (channels,), dtype), name="running_mean",
                                      requires_grad=False)
        self.running_var = Parameter(initializer("ones", (channels,), dtype), name="running_var",
                                     requires_grad=False)

    def construct(self, x: Tensor) -> Tensor:
        f32 = ms.float32
        scale = self.weight.astype(f32) * ms.ops.rsqrt(self.running_var.astype(f32) + self.eps)
        shift = self.bias.astype(f32) - self.running_mean.astype(f32) * scale
        y = x.astype(f32) * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)
        return y.astype(x.dtype)


class PreActResidualLayer(nn.Cell):
    """Residual conv unit: x + conv2(relu(conv1(relu(x))))."""

    def __init__(self, channels: int, bias: bool, dtype=ms.float32):
        super().__init__()
        self.convolution1 = Conv2d(channels, channels, 3, padding=1, bias=bias, dtype=dtype)
        self.convolution2 = Conv2d(channels, channels, 3, padding=1, bias=bias, dtype=dtype)

    def construct(self, x: Tensor) -> Tensor:
        h = self.convolution1(ms.ops.relu(x))
        return x + self.convolution2(ms.ops.relu(h))


class PreActResidualLayerBN(nn.Cell):
    """Residual conv unit with a batch norm after each conv: x + bn2(conv2(relu(bn1(conv1(relu(x))))))."""

    def __init__(self, channels: int, bias: bool, dtype=ms.float32):
        super().__init__()
        self.convolution1 = Conv2d(channels, channels, 3, padding=1, bias=bias, dtype=dtype)
        self.batch_norm1 = BatchNorm2d(channels, dtype=dtype)
        self.convolution2 = Conv2d(channels, channels, 3, padding=1, bias=bias, dtype=dtype)
        self.batch_norm2 = BatchNorm2d(channels, dtype=dtype)

    def construct(self, x: Tensor) -> Tensor:
        h = self.batch_norm1(self.convolution1(ms.ops.relu(x)))
        return x + self.batch_norm2(self.convolution2(ms.ops.relu(h)))


class FeatureFusionLayer(nn.Cell):
    """h (+ unit1(skip), skip resized to h), unit2, 2x bilinear upsample (align_corners), 1x1 projection."""

    def __init__(self, channels: int, batch_norm: bool, bias: bool, dtype=ms.float32):
        super().__init__()
        unit = PreActResidualLayerBN if batch_norm else PreActResidualLayer
        self.projection = Conv2d(channels, channels, 1, dtype=dtype)
        self.residual_layer1 = unit(channels, bias, dtype=dtype)
        self.residual_layer2 = unit(channels, bias, dtype=dtype)

    def construct(self, x: Tensor, skip: Tensor = None) -> Tensor:
        if skip is not None:
            if skip.shape != x.shape:
                skip = ops.interpolate(skip, size=(x.shape[2], x.shape[3]), mode="bilinear", align_corners=False)
            x = x + self.residual_layer1(skip)
        x = self.residual_layer2(x)
        x = ops.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        return self.projection(x)


class ReassembleLayer(nn.Cell):
    """1x1 projection to `channels`, then resize by `factor`: transposed conv (> 1), none (1), strided 3x3 (< 1)."""

    def __init__(self, hidden: int, channels: int, factor: float, dtype=ms.float32):
        super().__init__()
        self.projection = Conv2d(hidden, channels, 1, dtype=dtype)
        if factor > 1:
            self.resize = _ConvTranspose(channels, int(factor), dtype=dtype)
        elif factor < 1:
            self.resize = Conv2d(channels, channels, 3, stride=int(1 / factor), padding=1, dtype=dtype)
        else:
            self.resize = nn.Identity()

    def construct(self, x: Tensor) -> Tensor:
        return self.resize(self.projection(x))


class _ConvTranspose(nn.Cell):
    """k x k transposed conv with stride k (non-overlapping upsampling), torch weight layout [in, out, k, k]."""

    def __init__(self, channels: int, k: int, dtype=ms.float32):
        super().__init__()
        self.k = k
        self.weight = Parameter(initializer("zeros", (channels, channels, k, k), dtype), name="weight")
        self.bias = Parameter(initializer("zeros", (channels,), dtype), name="bias")

    def construct(self, x: Tensor) -> Tensor:
        return ops.conv_transpose2d(x, self.weight, self.bias, stride=self.k)


class DPTNeck(nn.Cell):
    """Reassemble (readout "project": tokens concatenated with the class token, Linear + GELU), 3x3 convs to
    the fusion width, then fusion from the coarsest map; returns the fused maps, coarsest first."""

    def __init__(self, hidden: int, neck_sizes: tuple, factors: tuple, fusion: int, batch_norm: bool, bias: bool,
                 dtype=ms.float32):
        super().__init__()
        self.reassemble_stage = ReassembleStage(hidden, neck_sizes, factors, dtype=dtype)
        self.convs = nn.CellList([Conv2d(c, fusion, 3, padding=1, bias=False, dtype=dtype) for c in neck_sizes])
        self.fusion_stage = FusionStage(len(neck_sizes), fusion, batch_norm, bias, dtype=dtype)

    def construct(self, features: tuple):
        maps = self.reassemble_stage(features)
        return self.fusion_stage(tuple(conv(m) for conv, m in zip(self.convs, maps)))


class ReassembleStage(nn.Cell):
    """Hybrid reassemble: maps 0 and 1 unchanged; token states 2, 3 -> readout projection -> ReassembleLayer."""

    def __init__(self, hidden: int, neck_sizes: tuple, factors: tuple, dtype=ms.float32):
        super().__init__()
        self.layers = nn.CellList([nn.Identity() if i < 2 else ReassembleLayer(hidden, c, f, dtype=dtype)
                                   for i, (c, f) in enumerate(zip(neck_sizes, factors))])
        self.readout_projects = nn.CellList([nn.Identity() if i < 2 else Linear(2 * hidden, hidden, dtype=dtype)
                                             for i in range(len(neck_sizes))])

    def construct(self, features: tuple):
        out = (features[0], features[1])
        for i in range(2, len(features)):
            h = features[i]
            b, n, d = h.shape
            size = int((n - 1) ** 0.5)
            tokens = h[:, 1:]
            readout = h[:, :1].broadcast_to((b, n - 1, d))
            tokens = ops.gelu(self.readout_projects[i](ms.ops.cat((tokens, readout), axis=-1)))
            grid = tokens.swapaxes(1, 2).reshape(b, d, size, size)
            out = out + (self.layers[i](grid),)
        return out


class FusionStage(nn.Cell):
    """Fuse from the coarsest map: each layer takes the previous fused map and the next finer map."""

    def __init__(self, n: int, channels: int, batch_norm: bool, bias: bool, dtype=ms.float32):
        super().__init__()
        self.layers = nn.CellList([FeatureFusionLayer(channels, batch_norm, bias, dtype=dtype) for _ in range(n)])

    def construct(self, maps: tuple):
        x = self.layers[0](maps[-1])
        fused = (x,)
        for i in range(1, len(maps)):
            x = self.layers[i](x, maps[len(maps) - 1 - i])
            fused = fused + (x,)
        return fused
