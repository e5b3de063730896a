"""Multi-head attention, feed-forward and the transformer block of SD's spatial transformers.

Softmax is always taken in fp32 inside `ops.attention`, so diffusers' `upcast_attention` and
`upcast_softmax` flags have nothing to switch here and are not parameters.
"""
import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn

from .. import ops
from .layers import GroupNorm, LayerNorm, Linear


class Attention(nn.Cell):
    """Self- or cross-attention with `to_q/to_k/to_v/to_out.0` (diffusers' Attention, AttnProcessor2_0).

    Takes tokens [b, n, c] or feature maps [b, c, h, w] (flattened to tokens and back).
    norm_num_groups adds the pre-attention `group_norm` of the VAE mid-block; residual_connection
    adds the input back; the result is divided by rescale_output_factor. `mask` is an additive score
    bias (or bool, True = attend) broadcastable to [b, heads, n, m].
    """

    def __init__(self, query_dim: int, cross_attention_dim: int = None, heads: int = 8, dim_head: int = 64,
                 bias: bool = False, out_bias: bool = True, norm_num_groups: int = None, eps: float = 1e-5,
                 residual_connection: bool = False, rescale_output_factor: float = 1.0, dtype=ms.float32):
        super().__init__()
        inner = heads * dim_head
        kv_dim = cross_attention_dim or query_dim
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.residual_connection = residual_connection
        self.rescale_output_factor = rescale_output_factor
        self.group_norm = GroupNorm(norm_num_groups, query_dim, eps=eps, dtype=dtype) if norm_num_groups else None
        self.to_q = Linear(query_dim, inner, bias=bias, dtype=dtype)
        self.to_k = Linear(kv_dim, inner, bias=bias, dtype=dtype)
        self.to_v = Linear(kv_dim, inner, bias=bias, dtype=dtype)
        self.to_out = nn.CellList([Linear(inner, query_dim, bias=out_bias, dtype=dtype)])

    def _split_heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return ops.swapaxes(x.reshape(b, n, self.heads, -1), 1, 2)

    def construct(self, x: Float[Tensor, "b n c"], context: Float[Tensor, "b m d"] = None,
                  mask: Float[Tensor, "b 1 1 m"] = None) -> Float[Tensor, "b n c"]:
        residual = x
        shape = x.shape
        if len(shape) == 4:
            x = ops.swapaxes(x.reshape(shape[0], shape[1], -1), 1, 2)
        if self.group_norm is not None:
            x = ops.swapaxes(self.group_norm(ops.swapaxes(x, 1, 2)), 1, 2)
        kv = x if context is None else context
        q = self._split_heads(self.to_q(x))
        k = self._split_heads(self.to_k(kv))
        v = self._split_heads(self.to_v(kv))
        out = ops.attention(q, k, v, mask=mask, scale=self.scale)
        b, _, n, _ = out.shape
        out = self.to_out[0](ops.swapaxes(out, 1, 2).reshape(b, n, -1))
        if len(shape) == 4:
            out = ops.swapaxes(out, 1, 2).reshape(shape)
        if self.residual_connection:
            out = out + residual
        if self.rescale_output_factor != 1.0:
            out = out / self.rescale_output_factor
        return out


class GELU(nn.Cell):
    """proj then GELU (exact, or tanh-approximate)."""

    def __init__(self, dim_in: int, dim_out: int, approximate: str = "none", bias: bool = True, dtype=ms.float32):
        super().__init__()
        self.approximate = approximate
        self.proj = Linear(dim_in, dim_out, bias=bias, dtype=dtype)

    def construct(self, x: Float[Tensor, "... c"]) -> Float[Tensor, "... o"]:
        return ops.gelu(self.proj(x), self.approximate)


class GEGLU(nn.Cell):
    """proj to 2*dim_out, then a * gelu(gate) (Shazeer 2020)."""

    def __init__(self, dim_in: int, dim_out: int, approximate: str = "none", bias: bool = True, dtype=ms.float32):
        super().__init__()
        self.approximate = approximate
        self.proj = Linear(dim_in, dim_out * 2, bias=bias, dtype=dtype)

    def construct(self, x: Float[Tensor, "... c"]) -> Float[Tensor, "... o"]:
        return ops.geglu(self.proj(x), self.approximate)


class ApproximateGELU(nn.Cell):
    """proj then x * sigmoid(1.702 x) (diffusers' "geglu-approximate", despite its name not gated)."""

    def __init__(self, dim_in: int, dim_out: int, approximate: str = "none", bias: bool = True, dtype=ms.float32):
        super().__init__()
        self.proj = Linear(dim_in, dim_out, bias=bias, dtype=dtype)

    def construct(self, x: Float[Tensor, "... c"]) -> Float[Tensor, "... o"]:
        return ops.quick_gelu(self.proj(x))


_ACTIVATIONS = {"gelu": (GELU, "none"), "gelu-approximate": (GELU, "tanh"), "geglu": (GEGLU, "none"),
                "geglu-approximate": (ApproximateGELU, "none")}


class FeedForward(nn.Cell):
    """`net.0` activation projection, `net.1` dropout (no-op), `net.2` output Linear."""

    def __init__(self, dim: int, dim_out: int = None, mult: float = 4, activation_fn: str = "geglu",
                 inner_dim: int = None, bias: bool = True, dtype=ms.float32):
        super().__init__()
        if activation_fn not in _ACTIVATIONS:
            raise ValueError(f"FeedForward: unsupported activation_fn {activation_fn!r}")
        inner_dim = inner_dim or int(dim * mult)
        cls, approximate = _ACTIVATIONS[activation_fn]
        self.net = nn.CellList([cls(dim, inner_dim, approximate, bias=bias, dtype=dtype), nn.Identity(),
                                Linear(inner_dim, dim_out or dim, bias=bias, dtype=dtype)])

    def construct(self, x: Float[Tensor, "... c"]) -> Float[Tensor, "... o"]:
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Cell):
    """Pre-LayerNorm block: self-attention (attn1), cross-attention (attn2), feed-forward (ff).

    only_cross_attention makes attn1 attend to the context; double_self_attention makes attn2 a
    second self-attention; cross_attention_dim=None without it drops norm2/attn2.
    """

    def __init__(self, dim: int, num_attention_heads: int, attention_head_dim: int, cross_attention_dim: int = None,
                 activation_fn: str = "geglu", attention_bias: bool = False, only_cross_attention: bool = False,
                 double_self_attention: bool = False, norm_elementwise_affine: bool = True, norm_eps: float = 1e-5,
                 ff_inner_dim: int = None, ff_bias: bool = True, attention_out_bias: bool = True,
                 dtype=ms.float32):
        super().__init__()
        self.only_cross_attention = only_cross_attention
        heads, head_dim = num_attention_heads, attention_head_dim
        self.norm1 = LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_elementwise_affine, dtype=dtype)
        self.attn1 = Attention(dim, cross_attention_dim if only_cross_attention else None, heads, head_dim,
                               bias=attention_bias, out_bias=attention_out_bias, dtype=dtype)
        self.norm2 = self.attn2 = None
        if cross_attention_dim is not None or double_self_attention:
            self.norm2 = LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_elementwise_affine, dtype=dtype)
            self.attn2 = Attention(dim, None if double_self_attention else cross_attention_dim, heads, head_dim,
                                   bias=attention_bias, out_bias=attention_out_bias, dtype=dtype)
        self.norm3 = LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_elementwise_affine, dtype=dtype)
        self.ff = FeedForward(dim, activation_fn=activation_fn, inner_dim=ff_inner_dim, bias=ff_bias, dtype=dtype)

    def construct(self, x: Float[Tensor, "b n c"], context: Float[Tensor, "b m d"] = None) -> Float[Tensor, "b n c"]:
        x = self.attn1(self.norm1(x), context if self.only_cross_attention else None) + x
        if self.attn2 is not None:
            x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x
