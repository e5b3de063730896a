"""Sinusoidal embeddings, computed in fp32."""
import math

import mindspore as ms
import numpy as np
from mindspore import Tensor, ops


def timestep_embedding(timesteps: Tensor, dim: int, flip_sin_to_cos: bool = False,
                       downscale_freq_shift: float = 1.0, scale: float = 1.0,
                       max_period: int = 10000) -> Tensor:
    """fp32 [b, dim] sinusoidal embedding of timesteps[b] (DDPM; diffusers' get_timestep_embedding)."""
    half = dim // 2
    exponent = -math.log(max_period) * np.arange(half, dtype=np.float32) / (half - downscale_freq_shift)
    freqs = Tensor(np.exp(exponent).astype(np.float32))
    args = timesteps.astype(ms.float32).reshape(-1, 1) * freqs.reshape(1, -1) * scale
    sin, cos = ops.sin(args), ops.cos(args)
    emb = ops.cat((cos, sin), axis=-1) if flip_sin_to_cos else ops.cat((sin, cos), axis=-1)
    if dim % 2 == 1:
        emb = ops.pad(emb, (0, 1))
    return emb
