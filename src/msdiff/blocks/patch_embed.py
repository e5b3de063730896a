"""Patch embedding with a fixed 2D sine-cosine position table (ViT / DiT / PixArt / SD3 inputs)."""
import math

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore.ops import constexpr

from .layers import Conv2d


def sincos_pos_embed_2d(embed_dim: int, grid_h: int, grid_w: int, base_size: int,
                        interpolation_scale: float = 1.0) -> np.ndarray:
    """[grid_h * grid_w, embed_dim] float32 table, rows in raster order (MAE / DiT 2D sin-cos embedding).

    Positions are index / (grid / base_size) / interpolation_scale; the first half of the channels
    encodes the column, the second half the row, each as [sin | cos] over frequencies 10000^(-2k/d).
    Computed in float64 on the host and rounded once (diffusers' get_2d_sincos_pos_embed).
    """
    if embed_dim % 4:
        raise ValueError(f"sincos_pos_embed_2d: embed_dim must be a multiple of 4, got {embed_dim}")
    rows = np.arange(grid_h, dtype=np.float32) / np.float32(grid_h / base_size) / np.float32(interpolation_scale)
    cols = np.arange(grid_w, dtype=np.float32) / np.float32(grid_w / base_size) / np.float32(interpolation_scale)
    quarter = embed_dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)

    def one_axis(pos: np.ndarray) -> np.ndarray:
        phase = np.outer(pos.astype(np.float64), omega)
        return np.concatenate([np.sin(phase), np.cos(phase)], axis=1)

    col_emb = one_axis(np.tile(cols, grid_h))
    row_emb = one_axis(np.repeat(rows, grid_w))
    return np.concatenate([col_emb, row_emb], axis=1).astype(np.float32)


@constexpr
def _table(embed_dim: int, grid_h: int, grid_w: int, base_size: int, interpolation_scale: float) -> tuple:
    """The table as nested tuples; constexpr so a new grid size works under mindspore.jit too."""
    return tuple(map(tuple, sincos_pos_embed_2d(embed_dim, grid_h, grid_w, base_size, interpolation_scale).tolist()))


class PatchEmbed(nn.Cell):
    """`proj` (patch_size-strided conv) to tokens, plus the sin-cos position table (diffusers' PatchEmbed, sincos).

    The table for the configured height/width is built once; other input sizes get a table for their grid,
    with positions scaled to the configured base size as diffusers does.
    """

    def __init__(self, height: int, width: int, patch_size: int, in_channels: int, embed_dim: int,
                 interpolation_scale: float = 1.0, bias: bool = True, dtype=ms.float32):
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.grid = (height // patch_size, width // patch_size)
        self.base_size = height // patch_size
        self.interpolation_scale = interpolation_scale
        self.proj = Conv2d(in_channels, embed_dim, patch_size, stride=patch_size, bias=bias, dtype=dtype)
        side = int(math.sqrt(self.grid[0] * self.grid[1]))
        self.pos_table = Tensor(sincos_pos_embed_2d(embed_dim, side, side, self.base_size, interpolation_scale)
                                [None])

    def construct(self, x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b n d"]:
        b, _, h, w = x.shape
        gh, gw = h // self.patch_size, w // self.patch_size
        tokens = self.proj(x).reshape(b, self.embed_dim, gh * gw).swapaxes(1, 2)
        if (gh, gw) == self.grid:
            pos = self.pos_table
        else:
            pos = Tensor(np.array(_table(self.embed_dim, gh, gw, self.base_size, self.interpolation_scale),
                                  np.float32))[None]
        return (tokens.astype(ms.float32) + pos).astype(x.dtype)


def unpatchify(x: Float[Tensor, "b n e"], grid_h: int, grid_w: int, patch_size: int,
               channels: int) -> Float[Tensor, "b c h w"]:
    """Tokens [b, gh * gw, p * p * c] (raster order, each patch p x p x c) -> image [b, c, gh * p, gw * p]."""
    b, p = x.shape[0], patch_size
    x = x.reshape(b, grid_h, grid_w, p, p, channels).transpose(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, grid_h * p, grid_w * p)
