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

_SQRT1_2 = 0.7071067811865476
_HALF_0, _HALF_1 = Tensor(0, ms.int32), Tensor(1, ms.int32)


def _fp32_on_cpu(x: Tensor) -> Tensor:
    return x.astype(ms.float32) if _backend.IS_CPU and x.dtype != ms.float32 else x


def _back(y: Tensor, dtype) -> Tensor:
    return y if y.dtype == dtype else y.astype(dtype)


def silu(x: Tensor) -> Tensor:
    """fp32 compute on CPU, output in x.dtype: x * sigmoid(x)."""
    return _back(ops.silu(_fp32_on_cpu(x)), x.dtype)


def _gelu(x: Tensor, approximate: str) -> Tensor:
    """Exact GELU on CPU as torch computes it, x * 0.5 * (1 + erf(x * (1/sqrt 2))), with scalar operands: MindSpore
    2.10's ops.gelu divides by a computed sqrt(2) tensor (a Div kernel ~1.5x the Erf's time; 2x4096x1280 fp32:
    Div 16.6 ms, Erf 12 ms per call). Within 1 fp32 ulp of ops.gelu (no fused exact GELU kernel on CPU: ops.GeLU
    is the tanh form, 1e-4 rel L2 off; mint's GeluExt has no CPU kernel). Elsewhere the backend's kernel."""
    if _backend.IS_CPU and approximate == "none":
        return x * (ops.erf(x * _SQRT1_2) + 1.0) * 0.5
    return ops.gelu(x, approximate=approximate)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """fp32 compute on CPU, output in x.dtype: GELU, exact (erf) or with the tanh approximation (approximate="tanh")."""
    check(approximate in ("none", "tanh"), "gelu", f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return _back(_gelu(_fp32_on_cpu(x), approximate), x.dtype)


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
    check(approximate in ("none", "tanh"), "geglu", f"approximate must be 'none' or 'tanh', got {approximate!r}")
    if not _backend.IS_CPU:
        a, g = ops.chunk(x, 2, axis=-1)
        return a * ops.gelu(g, approximate=approximate)
    # The halves as two Gathers on the [rows, 2, n] view: in PyNative ops.chunk's last-axis halves are views whose
    # contiguous copies cost more than the whole GELU (2x4096x2560 fp32 geglu, in-process A/B, best of 9:
    # 882 -> 464 ms PyNative with the scalar-operand GELU, graph 487 -> 510 ms; graph runs a fast Split kernel).
    n = x.shape[-1] // 2
    x3 = _fp32_on_cpu(x).reshape(-1, 2, n)
    y = ops.gather(x3, _HALF_0, 1) * _gelu(ops.gather(x3, _HALF_1, 1), approximate)
    return _back(y.reshape(x.shape[:-1] + (n,)), x.dtype)
