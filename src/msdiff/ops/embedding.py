"""Sinusoidal embeddings, computed in fp32 with a compensated phase (accurate to ~1e-7 at t ~ 1000)."""
import math

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor, ops


def _split(a: Tensor) -> tuple:
    """Veltkamp split of fp32 a into 12-bit halves, so products of halves are exact in fp32."""
    c = a * 4097.0
    hi = c - (c - a)
    return hi, a - hi


def timestep_embedding(timesteps: Float[Tensor, "b"], dim: int, flip_sin_to_cos: bool = False,
                       downscale_freq_shift: float = 1.0, scale: float = 1.0,
                       max_period: int = 10000) -> Float[Tensor, "b dim"]:
    """fp32 output: [b, dim] sinusoidal embedding of timesteps[b] (DDPM; diffusers' get_timestep_embedding).

    The phase t * freq is carried as an fp32 pair (Dekker's exact product), so sin/cos of phases
    up to ~1000 are accurate to fp32 rounding of the result, not of the phase (plain fp32: ~3e-5).
    """
    half = dim // 2
    exponent = -math.log(max_period) * np.arange(half, dtype=np.float64) / (half - downscale_freq_shift)
    freqs = np.exp(exponent) * scale
    f_hi = freqs.astype(np.float32)
    f_lo = (freqs - f_hi.astype(np.float64)).astype(np.float32)
    t = timesteps.astype(ms.float32).reshape(-1, 1)
    fh = Tensor(f_hi.reshape(1, -1))
    phase = t * fh
    t_hi, t_lo = _split(t)
    g_hi, g_lo = _split(fh)
    err = ((t_hi * g_hi - phase) + t_hi * g_lo + t_lo * g_hi) + t_lo * g_lo
    lo = err + t * Tensor(f_lo.reshape(1, -1))
    s, c = ops.sin(phase), ops.cos(phase)
    sin, cos = s + lo * c, c - lo * s
    emb = ops.cat((cos, sin), axis=-1) if flip_sin_to_cos else ops.cat((sin, cos), axis=-1)
    if dim % 2 == 1:
        emb = ops.pad(emb, (0, 1))
    return emb
