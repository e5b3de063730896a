"""Thin parameter-owning Cells over msdiff.ops, named like their torch counterparts.

Parameter names (`weight`, `bias`) match diffusers/transformers state-dict names, so a net's
weight-key map is the identity wherever the module tree matches.
"""
import math

import mindspore as ms
from mindspore import Parameter, Tensor, nn
from mindspore.common.initializer import HeUniform, Normal, Uniform, initializer

from .. import ops


def _param(init, shape, dtype, name):
    return Parameter(initializer(init, shape, dtype), name=name)


class Linear(nn.Cell):
    """y = x W^T + b (torch.nn.Linear layout and initialisation)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=ms.float32):
        super().__init__()
        self.weight = _param(HeUniform(math.sqrt(5)), (out_features, in_features), dtype, "weight")
        bound = 1.0 / math.sqrt(in_features)
        self.bias = _param(Uniform(bound), (out_features,), dtype, "bias") if bias else None

    def construct(self, x: Tensor) -> Tensor:
        return ops.linear(x, self.weight, self.bias)


class Conv2d(nn.Cell):
    """torch.nn.Conv2d layout (weight [out, in/groups, kh, kw]) and initialisation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, groups: int = 1, bias: bool = True, dtype=ms.float32):
        super().__init__()
        self.stride, self.padding, self.groups = stride, padding, groups
        shape = (out_channels, in_channels // groups, kernel_size, kernel_size)
        self.weight = _param(HeUniform(math.sqrt(5)), shape, dtype, "weight")
        bound = 1.0 / math.sqrt(in_channels // groups * kernel_size * kernel_size)
        self.bias = _param(Uniform(bound), (out_channels,), dtype, "bias") if bias else None

    def construct(self, x: Tensor) -> Tensor:
        return ops.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                          groups=self.groups)


class GroupNorm(nn.Cell):
    """GroupNorm with fp32 statistics (ops.group_norm)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 dtype=ms.float32):
        super().__init__()
        self.num_groups, self.eps = num_groups, eps
        self.weight = _param("ones", (num_channels,), dtype, "weight") if affine else None
        self.bias = _param("zeros", (num_channels,), dtype, "bias") if affine else None

    def construct(self, x: Tensor) -> Tensor:
        return ops.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class LayerNorm(nn.Cell):
    """LayerNorm over the last axis with fp32 statistics (ops.layer_norm)."""

    def __init__(self, dim: int, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 dtype=ms.float32):
        super().__init__()
        self.eps = eps
        self.weight = _param("ones", (dim,), dtype, "weight") if elementwise_affine else None
        self.bias = _param("zeros", (dim,), dtype, "bias") if elementwise_affine and bias else None

    def construct(self, x: Tensor) -> Tensor:
        return ops.layer_norm(x, self.weight, self.bias, self.eps)


class Embedding(nn.Cell):
    """Lookup table weight[num, dim] (torch.nn.Embedding layout)."""

    def __init__(self, num_embeddings: int, dim: int, dtype=ms.float32):
        super().__init__()
        self.weight = _param(Normal(1.0), (num_embeddings, dim), dtype, "weight")

    def construct(self, ids: Tensor) -> Tensor:
        return ops.embedding(ids, self.weight)
