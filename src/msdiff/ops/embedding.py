"""Sinusoidal embeddings, computed in fp32 with a compensated phase (accurate to ~1e-7 at t ~ 1000)."""
import math

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor, ops
from mindspore.ops import constexpr


def _split(a):
    """Veltkamp split of fp32 a (Tensor or float32 array) into 12-bit halves; products of halves are exact."""
    c = a * np.float32(4097.0)
    hi = c - (c - a)
    return hi, a - hi


@constexpr
def _frequencies(half: int, shift: float, scale: float, max_period: float) -> tuple:
    """Host-side float64 frequencies as fp32 (hi, lo) and the hi part's Veltkamp halves, as lists.

    constexpr: evaluated by Python even under mindspore.jit, whose constant folding is not float64.
    """
    exponent = -math.log(max_period) * np.arange(half, dtype=np.float64) / (half - shift)
    freqs = np.exp(exponent) * scale
    f_hi = freqs.astype(np.float32)
    f_lo = (freqs - f_hi.astype(np.float64)).astype(np.float32)
    g_hi, g_lo = _split(f_hi)
    return tuple(tuple(float(v) for v in a) for a in (f_hi, f_lo, g_hi, g_lo))


def timestep_embedding(timesteps: Float[Tensor, "b"], dim: int, flip_sin_to_cos: bool = False,
                       downscale_freq_shift: float = 1.0, scale: float = 1.0,
                       max_period: int = 10000) -> Float[Tensor, "b dim"]:
    """fp32 output: [b, dim] sinusoidal embedding of timesteps[b] (DDPM; diffusers' get_timestep_embedding).

    The phase t * freq is carried as an fp32 pair (Dekker's exact product), so sin/cos of phases
    up to ~1000 are accurate to fp32 rounding of the result, not of the phase (plain fp32: ~3e-5).
    """
    f_hi, f_lo, g_hi, g_lo = (Tensor(np.array(f, np.float32).reshape(1, -1))
                              for f in _frequencies(dim // 2, downscale_freq_shift, scale, max_period))
    t = timesteps.astype(ms.float32).reshape(-1, 1)
    phase = t * f_hi
    t_hi, t_lo = _split(t)
    err = ((t_hi * g_hi - phase) + t_hi * g_lo + t_lo * g_hi) + t_lo * g_lo
    lo = err + t * f_lo
    s, c = ops.sin(phase), ops.cos(phase)
    sin, cos = s + lo * c, c - lo * s
    emb = ops.cat((cos, sin), axis=-1) if flip_sin_to_cos else ops.cat((sin, cos), axis=-1)
    if dim % 2 == 1:
        emb = ops.pad(emb, (0, 1))
    return emb
