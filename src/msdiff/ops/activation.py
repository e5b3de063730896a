"""Pointwise activations: one rounding to the output dtype.

On CPU a half-precision input is computed in fp32 and rounded once: MindSpore's CPU fp16 kernels
round inside the function (measured on N(0, 3^2) inputs: silu rel error 3.6e-4 against 2.0e-4 for
the correctly rounded result, gelu 1.7e-4 against 1.1e-4), which made a fp16 SD-XL UNet call 1.6x
less accurate than diffusers' (torch's CPU kernels compute fp16 in fp32). Elsewhere the backend's
kernel runs in the input dtype.
"""
import mindspore as ms
from mindspore import Tensor, ops

from . import _backend
from ._checks import check


def _fp32_on_cpu(x: Tensor) -> Tensor:
    return x.astype(ms.float32) if _backend.IS_CPU and x.dtype != ms.float32 else x


def _back(y: Tensor, dtype) -> Tensor:
    return y if y.dtype == dtype else y.astype(dtype)


def silu(x: Tensor) -> Tensor:
    """fp32 compute on CPU, output in x.dtype: x * sigmoid(x)."""
    return _back(ops.silu(_fp32_on_cpu(x)), x.dtype)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """fp32 compute on CPU, output in x.dtype: GELU, exact (erf) or with the tanh approximation (approximate="tanh")."""
    check(approximate in ("none", "tanh"), "gelu", f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return _back(ops.gelu(_fp32_on_cpu(x), approximate=approximate), x.dtype)


_ACTIVATIONS = ("silu", "swish", "gelu")


def activate(x: Tensor, name: str) -> Tensor:
    """The activation a diffusers config names (act_fn): "silu" / "swish" (silu) or "gelu" (exact, erf)."""
    check(name in _ACTIVATIONS, "activate", f"act_fn must be one of {_ACTIVATIONS}, got {name!r}")
    if name == "gelu":
        return gelu(x)
    return silu(x)


def quick_gelu(x: Tensor) -> Tensor:
    """fp32 compute on CPU, output in x.dtype: CLIP's x * sigmoid(1.702 x)."""
    xf = _fp32_on_cpu(x)
    return _back(xf * ops.sigmoid(1.702 * xf), x.dtype)


def geglu(x: Tensor, approximate: str = "none") -> Tensor:
    """fp32 compute on CPU, output in x.dtype: a * gelu(g) where x[..., 2n] = concat(a, g) on the last axis
    (GEGLU, Shazeer 2020)."""
    check(x.shape[-1] % 2 == 0, "geglu", f"last axis must be even, got {x.shape[-1]}")
    a, g = ops.chunk(_fp32_on_cpu(x), 2, axis=-1)
    return _back(a * ops.gelu(g, approximate=approximate), x.dtype)
