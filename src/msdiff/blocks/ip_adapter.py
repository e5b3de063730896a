"""IP-Adapter blocks: the image projections (base; "plus" Resampler) and the decoupled cross-attention (Ye et al.
2023, arXiv:2308.06721).

The decoupled cross-attention reads the text tokens and the image tokens from one context [b, n_text + T, d]
(image tokens last, T fixed), so the UNet and its callers pass a single `encoder_hidden_states`:

    out = to_out(attn(q, k(text), v(text)) + scale * attn(q, k_ip(image), v_ip(image)))

as diffusers' IPAdapterAttnProcessor2_0 with one adapter and no masks. `scale` is a Parameter, so
`ip_adapter_scale` changes compile nothing.
"""
import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Parameter, Tensor, nn

from .. import ops
from .attention import Attention
from .layers import LayerNorm, Linear


class ImageProjection(nn.Cell):
    """IP-Adapter (base) image projection: Linear to T tokens of width d, then LayerNorm."""

    def __init__(self, image_embed_dim: int, cross_attention_dim: int, num_tokens: int = 4, dtype=ms.float32):
        super().__init__()
        self.num_tokens = num_tokens
        self.image_embeds = Linear(image_embed_dim, num_tokens * cross_attention_dim, dtype=dtype)
        self.norm = LayerNorm(cross_attention_dim, dtype=dtype)

    def construct(self, image_embeds: Float[Tensor, "b e"]) -> Float[Tensor, "b t d"]:
        x = self.image_embeds(image_embeds.astype(self.image_embeds.weight.dtype))
        return self.norm(x.reshape(x.shape[0], self.num_tokens, -1))


class ResamplerBlock(nn.Cell):
    """One Resampler layer (diffusers' IPAdapterPlusImageProjectionBlock): the latent queries attend to the
    normed image features and themselves, then a bias-free GELU feed-forward, each with a residual."""

    def __init__(self, dim: int, heads: int, dim_head: int = 64, mult: int = 4, dtype=ms.float32):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head ** -0.5
        self.ln0, self.ln1, self.ff_norm = (LayerNorm(dim, dtype=dtype) for _ in range(3))
        self.to_q, self.to_k, self.to_v = (Linear(dim, inner, bias=False, dtype=dtype) for _ in range(3))
        self.to_out = Linear(inner, dim, bias=False, dtype=dtype)
        self.ff_up = Linear(dim, mult * dim, bias=False, dtype=dtype)
        self.ff_down = Linear(mult * dim, dim, bias=False, dtype=dtype)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.heads, -1).swapaxes(1, 2)

    def construct(self, x: Float[Tensor, "b n c"], latents: Float[Tensor, "b q c"]) -> Float[Tensor, "b q c"]:
        normed = self.ln1(latents)
        context = ms.ops.concat((self.ln0(x), normed), axis=1)
        out = ops.attention(self._heads(self.to_q(normed)), self._heads(self.to_k(context)),
                            self._heads(self.to_v(context)), scale=self.scale)
        b, _, q, _ = out.shape
        latents = self.to_out(out.swapaxes(1, 2).reshape(b, q, -1)) + latents
        return self.ff_down(ops.gelu(self.ff_up(self.ff_norm(latents)))) + latents


class Resampler(nn.Cell):
    """IP-Adapter Plus image projection (diffusers' IPAdapterPlusImageProjection): learned latent queries read
    CLIP vision hidden states [b, n, e] through `depth` ResamplerBlocks, then proj_out and norm_out to
    [b, num_queries, d]."""

    def __init__(self, embed_dim: int, output_dim: int, hidden_dim: int, heads: int, num_queries: int,
                 depth: int = 4, dtype=ms.float32):
        super().__init__()
        self.num_tokens = num_queries
        self.latents = Parameter(Tensor(np.zeros((1, num_queries, hidden_dim), np.float32)).astype(dtype),
                                 name="latents")
        self.proj_in = Linear(embed_dim, hidden_dim, dtype=dtype)
        self.layers = nn.CellList([ResamplerBlock(hidden_dim, heads, dtype=dtype) for _ in range(depth)])
        self.proj_out = Linear(hidden_dim, output_dim, dtype=dtype)
        self.norm_out = LayerNorm(output_dim, dtype=dtype)

    def construct(self, hidden_states: Float[Tensor, "b n e"]) -> Float[Tensor, "b q d"]:
        x = self.proj_in(hidden_states.astype(self.proj_in.weight.dtype))
        latents = ms.ops.tile(self.latents, (x.shape[0], 1, 1))
        for block in self.layers:
            latents = block(x, latents)
        return self.norm_out(self.proj_out(latents))


class IPAttention(nn.Cell):
    """A cross-attention (diffusers' attn2) plus to_k_ip / to_v_ip on the last num_tokens context tokens.

    Shares the wrapped Attention's projections (same parameter names)."""

    def __init__(self, base: Attention, to_k_ip: Linear, to_v_ip: Linear, num_tokens: int, scale: Parameter):
        super().__init__()
        if base.group_norm is not None or base.residual_connection or base.rescale_output_factor != 1.0:
            raise ValueError("IPAttention: only plain transformer cross-attention (attn2) takes an IP-Adapter")
        self.heads, self.scale_qk, self.num_tokens = base.heads, base.scale, num_tokens
        self.to_q, self.to_k, self.to_v, self.to_out = base.to_q, base.to_k, base.to_v, base.to_out
        self.to_k_ip, self.to_v_ip = to_k_ip, to_v_ip
        self.ip_scale = scale

    def _split_heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.heads, -1).swapaxes(1, 2)

    def construct(self, x: Float[Tensor, "b n c"], context: Float[Tensor, "b m d"] = None,
                  mask: Float[Tensor, "b 1 1 m"] = None) -> Float[Tensor, "b n c"]:
        end = context.shape[1] - self.num_tokens
        text, image = context[:, :end], context[:, end:]
        q = self._split_heads(self.to_q(x))
        out = ops.attention(q, self._split_heads(self.to_k(text)), self._split_heads(self.to_v(text)), mask=mask,
                            scale=self.scale_qk)
        ip = ops.attention(q, self._split_heads(self.to_k_ip(image)), self._split_heads(self.to_v_ip(image)),
                           scale=self.scale_qk)
        out = out + self.ip_scale.astype(out.dtype) * ip
        b, _, n, _ = out.shape
        return self.to_out[0](out.swapaxes(1, 2).reshape(b, n, -1))


def ip_scale(value: float, name: str) -> Parameter:
    """The shared ip_adapter_scale Parameter [1] (fp32) of one UNet."""
    return Parameter(Tensor(np.asarray([value], np.float32)), name=name, requires_grad=False)
