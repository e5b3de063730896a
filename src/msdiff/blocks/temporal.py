"""Temporal blocks shared by the video nets: Conv3d, TemporalConvLayer, AlphaBlender and the frame-axis transformers.

Video features travel between blocks as frame batches [b * f, c, h, w] (diffusers' layout); `num_frames` is a
Python int taken from the input shape, so it is a constant under `mindspore.jit`.
"""
import math

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Parameter, Tensor, nn
from mindspore import ops as mops
from mindspore.common.initializer import HeUniform, Uniform, initializer

from .. import ops
from .attention import Attention, BasicTransformerBlock, FeedForward
from .layers import GroupNorm, LayerNorm, Linear


def to_video(x: Float[Tensor, "bf c h w"], num_frames: int) -> Float[Tensor, "b c f h w"]:
    """Frame batch -> video tensor."""
    bf, c, h, w = x.shape
    return x.reshape(bf // num_frames, num_frames, c, h, w).transpose(0, 2, 1, 3, 4)


def to_frames(x: Float[Tensor, "b c f h w"]) -> Float[Tensor, "bf c h w"]:
    """Video tensor -> frame batch."""
    b, c, f, h, w = x.shape
    return x.transpose(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def _triple(v) -> tuple:
    return (v,) * 3 if isinstance(v, int) else tuple(v)


class Conv3d(nn.Cell):
    """torch.nn.Conv3d layout (weight [out, in, kt, kh, kw]) and initialisation; stride 1 (all the video nets use)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, padding=0, bias: bool = True,
                 dtype=ms.float32):
        super().__init__()
        kernel = _triple(kernel_size)
        self.padding = _triple(padding)
        self.weight = Parameter(initializer(HeUniform(math.sqrt(5)), (out_channels, in_channels) + kernel, dtype),
                                name="weight")
        bound = 1.0 / math.sqrt(in_channels * math.prod(kernel))
        self.bias = Parameter(initializer(Uniform(bound), (out_channels,), dtype), name="bias") if bias else None

    def construct(self, x: Float[Tensor, "b c t h w"]) -> Float[Tensor, "b o t h w"]:
        return ops.conv3d(x, self.weight, self.bias, padding=self.padding)


def _norm_silu_conv(groups: int, in_dim: int, out_dim: int, dropout_slots: int, dtype) -> nn.CellList:
    """diffusers' nn.Sequential(GroupNorm, SiLU, [Dropout], Conv3d 3x1x1) with its indices (SiLU, Dropout: no-ops)."""
    return nn.CellList([GroupNorm(groups, in_dim, dtype=dtype)] + [nn.Identity()] * dropout_slots
                       + [Conv3d(in_dim, out_dim, (3, 1, 1), padding=(1, 0, 0), dtype=dtype)])


class TemporalConvLayer(nn.Cell):
    """diffusers' TemporalConvLayer (ModelScope): four GroupNorm-SiLU-Conv3d(3x1x1) stages over frames, residual."""

    def __init__(self, in_dim: int, out_dim: int = None, norm_num_groups: int = 32, dtype=ms.float32):
        super().__init__()
        out_dim = out_dim or in_dim
        self.conv1 = _norm_silu_conv(norm_num_groups, in_dim, out_dim, 1, dtype)
        self.conv2 = _norm_silu_conv(norm_num_groups, out_dim, in_dim, 2, dtype)
        self.conv3 = _norm_silu_conv(norm_num_groups, out_dim, in_dim, 2, dtype)
        self.conv4 = _norm_silu_conv(norm_num_groups, out_dim, in_dim, 2, dtype)

    def construct(self, x: Float[Tensor, "bf c h w"], num_frames: int) -> Float[Tensor, "bf c h w"]:
        v = to_video(x, num_frames)
        h = v
        for stage in (self.conv1, self.conv2, self.conv3, self.conv4):
            h = stage[-1](ops.silu(stage[0](h)))
        return to_frames(v + h)


class AlphaBlender(nn.Cell):
    """alpha * spatial + (1 - alpha) * temporal with a learned `mix_factor` (diffusers' AlphaBlender).

    "learned": alpha = sigmoid(mix_factor); "learned_with_images": the same, but 1 on frames flagged by
    image_only_indicator [b, f]; "fixed": alpha = mix_factor. switch_spatial_to_temporal_mix uses 1 - alpha.
    """

    def __init__(self, alpha: float, merge_strategy: str = "learned_with_images",
                 switch_spatial_to_temporal_mix: bool = False):
        super().__init__()
        if merge_strategy not in ("learned", "fixed", "learned_with_images"):
            raise ValueError(f"AlphaBlender: unsupported merge_strategy {merge_strategy!r}")
        self.merge_strategy = merge_strategy
        self.switch = switch_spatial_to_temporal_mix
        self.mix_factor = Parameter(Tensor([alpha], ms.float32), name="mix_factor")

    def _alpha(self, image_only_indicator: Tensor, ndim: int) -> Tensor:
        if self.merge_strategy == "fixed":
            return self.mix_factor
        alpha = mops.sigmoid(self.mix_factor.astype(ms.float32))
        if self.merge_strategy == "learned":
            return alpha
        if image_only_indicator is None:
            raise ValueError("AlphaBlender: merge_strategy 'learned_with_images' needs image_only_indicator")
        alpha = mops.where(image_only_indicator.astype(ms.bool_), mops.ones_like(alpha), alpha)
        if ndim == 5:
            return alpha[:, None, :, None, None]
        return alpha.reshape(-1)[:, None, None]

    def construct(self, x_spatial: Tensor, x_temporal: Tensor, image_only_indicator: Tensor = None) -> Tensor:
        alpha = self._alpha(image_only_indicator, x_spatial.ndim).astype(x_spatial.dtype)
        if self.switch:
            alpha = 1.0 - alpha
        return alpha * x_spatial + (1.0 - alpha) * x_temporal


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """[1, length, dim] table of Vaswani et al. 2017 (sin on even, cos on odd channels; diffusers' `pe` buffer)."""
    position = np.arange(length, dtype=np.float32)[:, None]
    div = np.exp(np.arange(0, dim, 2, dtype=np.float32) * np.float32(-math.log(10000.0) / dim))
    pe = np.zeros((1, length, dim), np.float32)
    pe[0, :, 0::2] = np.sin(position * div)
    pe[0, :, 1::2] = np.cos(position * div)
    return pe


class PositionalTransformerBlock(BasicTransformerBlock):
    """BasicTransformerBlock with diffusers' sinusoidal `pos_embed` added to the normed tokens before attn1 and
    attn2 (AnimateDiff's motion modules); the table is computed, not loaded."""

    def __init__(self, dim: int, num_attention_heads: int, attention_head_dim: int, num_positional_embeddings: int,
                 **kwargs):
        super().__init__(dim, num_attention_heads, attention_head_dim, **kwargs)
        self.max_positions = num_positional_embeddings
        self.pe = Tensor(sinusoidal_positions(num_positional_embeddings, dim))

    def construct(self, x: Float[Tensor, "b n c"], context: Float[Tensor, "b m d"] = None) -> Float[Tensor, "b n c"]:
        n = x.shape[1]
        if n > self.max_positions:
            raise ValueError(f"PositionalTransformerBlock: {n} frames exceed num_positional_embeddings "
                             f"{self.max_positions}")
        pe = self.pe[:, :n].astype(x.dtype)
        x = self.attn1(self.norm1(x) + pe, context if self.only_cross_attention else None) + x
        if self.attn2 is not None:
            x = self.attn2(self.norm2(x) + pe, context) + x
        return self.ff(self.norm3(x)) + x


class TransformerTemporalModel(nn.Cell):
    """diffusers' TransformerTemporalModel (= AnimateDiffTransformer3D): transformer blocks over the frame axis of
    each pixel; GroupNorm over (c, f, h, w) groups, Linear proj_in/proj_out, residual."""

    def __init__(self, num_attention_heads: int, attention_head_dim: int, in_channels: int, num_layers: int = 1,
                 norm_num_groups: int = 32, cross_attention_dim: int = None, attention_bias: bool = False,
                 activation_fn: str = "geglu", double_self_attention: bool = True, positional_embeddings: str = None,
                 num_positional_embeddings: int = None, dtype=ms.float32):
        super().__init__()
        if positional_embeddings not in (None, "sinusoidal"):
            raise ValueError(f"TransformerTemporalModel: unsupported positional_embeddings {positional_embeddings!r}")
        if positional_embeddings and num_positional_embeddings is None:
            raise ValueError("TransformerTemporalModel: positional_embeddings needs num_positional_embeddings")
        inner = num_attention_heads * attention_head_dim
        self.norm = GroupNorm(norm_num_groups, in_channels, eps=1e-6, dtype=dtype)
        self.proj_in = Linear(in_channels, inner, dtype=dtype)
        kwargs = dict(cross_attention_dim=cross_attention_dim, activation_fn=activation_fn,
                      attention_bias=attention_bias, double_self_attention=double_self_attention, dtype=dtype)
        if positional_embeddings:
            blocks = [PositionalTransformerBlock(inner, num_attention_heads, attention_head_dim,
                                                 num_positional_embeddings, **kwargs) for _ in range(num_layers)]
        else:
            blocks = [BasicTransformerBlock(inner, num_attention_heads, attention_head_dim, **kwargs)
                      for _ in range(num_layers)]
        self.transformer_blocks = nn.CellList(blocks)
        self.proj_out = Linear(inner, in_channels, dtype=dtype)

    def construct(self, x: Float[Tensor, "bf c h w"], num_frames: int,
                  context: Float[Tensor, "n m d"] = None) -> Float[Tensor, "bf c h w"]:
        bf, c, h, w = x.shape
        b = bf // num_frames
        v = self.norm(to_video(x, num_frames))
        tokens = self.proj_in(v.transpose(0, 3, 4, 2, 1).reshape(b * h * w, num_frames, c))
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        tokens = self.proj_out(tokens)
        out = tokens.reshape(b, h, w, num_frames, c).transpose(0, 3, 4, 1, 2).reshape(bf, c, h, w)
        return out + x


class TemporalBasicTransformerBlock(nn.Cell):
    """diffusers' TemporalBasicTransformerBlock (SVD): ff_in, self-attention, cross-attention and ff over frames.

    Residual around ff_in and ff only when dim == time_mix_inner_dim (always, in diffusers' nets).
    """

    def __init__(self, dim: int, time_mix_inner_dim: int, num_attention_heads: int, attention_head_dim: int,
                 cross_attention_dim: int = None, dtype=ms.float32):
        super().__init__()
        self.is_res = dim == time_mix_inner_dim
        self.norm_in = LayerNorm(dim, dtype=dtype)
        self.ff_in = FeedForward(dim, dim_out=time_mix_inner_dim, activation_fn="geglu", dtype=dtype)
        self.norm1 = LayerNorm(time_mix_inner_dim, dtype=dtype)
        self.attn1 = Attention(time_mix_inner_dim, None, num_attention_heads, attention_head_dim, dtype=dtype)
        self.norm2 = self.attn2 = None
        if cross_attention_dim is not None:
            self.norm2 = LayerNorm(time_mix_inner_dim, dtype=dtype)
            self.attn2 = Attention(time_mix_inner_dim, cross_attention_dim, num_attention_heads, attention_head_dim,
                                   dtype=dtype)
        self.norm3 = LayerNorm(time_mix_inner_dim, dtype=dtype)
        self.ff = FeedForward(time_mix_inner_dim, activation_fn="geglu", dtype=dtype)

    def construct(self, x: Float[Tensor, "bf n c"], num_frames: int,
                  context: Float[Tensor, "bn m d"] = None) -> Float[Tensor, "bf n c"]:
        bf, n, c = x.shape
        b = bf // num_frames
        x = x.reshape(b, num_frames, n, c).swapaxes(1, 2).reshape(b * n, num_frames, c)
        h = self.ff_in(self.norm_in(x))
        if self.is_res:
            h = h + x
        h = self.attn1(self.norm1(h)) + h
        if self.attn2 is not None:
            h = self.attn2(self.norm2(h), context) + h
        ff = self.ff(self.norm3(h))
        h = ff + h if self.is_res else ff
        return h.reshape(b, n, num_frames, -1).swapaxes(1, 2).reshape(bf, n, -1)


def repeat_frames(x: Float[Tensor, "b ..."], num_frames: int) -> Float[Tensor, "bf ..."]:
    """Each batch entry repeated num_frames times, consecutively (torch's repeat_interleave on axis 0)."""
    b = x.shape[0]
    return mops.broadcast_to(x[:, None], (b, num_frames) + x.shape[1:]).reshape((b * num_frames,) + x.shape[1:])
