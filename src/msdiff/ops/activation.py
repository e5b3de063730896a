"""Pointwise activations, computed in the input dtype (they are well conditioned)."""
from mindspore import Tensor, ops

from ._checks import check


def silu(x: Tensor) -> Tensor:
    """Input-dtype compute: x * sigmoid(x)."""
    return ops.silu(x)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """Input-dtype compute: GELU, exact (erf) or with the tanh approximation (approximate="tanh")."""
    check(approximate in ("none", "tanh"), "gelu", f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return ops.gelu(x, approximate=approximate)


def quick_gelu(x: Tensor) -> Tensor:
    """Input-dtype compute: CLIP's x * sigmoid(1.702 x)."""
    return x * ops.sigmoid(1.702 * x)


def geglu(x: Tensor, approximate: str = "none") -> Tensor:
    """Input-dtype compute: a * gelu(g) where x[..., 2n] = concat(a, g) on the last axis (GEGLU, Shazeer 2020)."""
    check(x.shape[-1] % 2 == 0, "geglu", f"last axis must be even, got {x.shape[-1]}")
    a, g = ops.chunk(x, 2, axis=-1)
    return a * gelu(g, approximate)
