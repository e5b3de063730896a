"""Timestep embeddings: sinusoidal projection (Timesteps) and its MLP (TimestepEmbedding)."""
import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .. import ops
from .layers import Linear


def batch_timesteps(timestep, b: int) -> Float[Tensor, "b"]:
    """A Tensor (any shape with 1 or b elements) or Python number -> float32 timesteps [b], as diffusers'
    nets broadcast them."""
    if isinstance(timestep, Tensor):
        t = timestep.astype(ms.float32).reshape(-1)
    else:
        t = mops.fill(ms.float32, (1,), timestep)
    if t.shape[0] != b:
        t = t.broadcast_to((b,))
    return t


class Timesteps(nn.Cell):
    """Parameter-free sinusoidal embedding of timesteps (diffusers' Timesteps), computed in fp32."""

    def __init__(self, num_channels: int, flip_sin_to_cos: bool, downscale_freq_shift: float, scale: float = 1.0):
        super().__init__()
        self.num_channels = num_channels
        self.flip_sin_to_cos = flip_sin_to_cos
        self.downscale_freq_shift = downscale_freq_shift
        self.scale = scale

    def construct(self, timesteps: Float[Tensor, "b"]) -> Float[Tensor, "b c"]:
        return ops.timestep_embedding(timesteps, self.num_channels, flip_sin_to_cos=self.flip_sin_to_cos,
                                      downscale_freq_shift=self.downscale_freq_shift, scale=self.scale)


class TimestepEmbedding(nn.Cell):
    """linear_1 -> SiLU (or act_fn "gelu", DeepFloyd IF) -> linear_2, with LCM's optional `cond_proj` of a guidance
    embedding added first."""

    def __init__(self, in_channels: int, time_embed_dim: int, out_dim: int = None, cond_proj_dim: int = None,
                 dtype=ms.float32, act_fn: str = "silu"):
        super().__init__()
        self.act_fn = act_fn
        self.linear_1 = Linear(in_channels, time_embed_dim, dtype=dtype)
        self.cond_proj = Linear(cond_proj_dim, in_channels, bias=False, dtype=dtype) if cond_proj_dim else None
        self.linear_2 = Linear(time_embed_dim, out_dim or time_embed_dim, dtype=dtype)

    def construct(self, sample: Float[Tensor, "b c"], condition: Float[Tensor, "b d"] = None) -> Float[Tensor, "b e"]:
        if condition is not None:
            sample = sample + self.cond_proj(condition)
        return self.linear_2(ops.activate(self.linear_1(sample), self.act_fn))
