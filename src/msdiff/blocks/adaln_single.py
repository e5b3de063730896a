"""adaLN-single conditioning (Chen et al. 2023, PixArt-alpha sec. 2.3): one timestep MLP shared by all blocks,
each block adding its own learned `scale_shift_table`; the caption projection; the PixArt transformer block."""
import mindspore as ms
from jaxtyping import Float
from mindspore import Parameter, Tensor, nn
from mindspore import ops as mops
from mindspore.common.initializer import Normal, initializer

from .. import ops
from .adaln import gated, modulate
from .attention import Attention, FeedForward
from .embeddings import TimestepEmbedding, Timesteps
from .layers import LayerNorm, Linear


def scale_shift_table(rows: int, dim: int, dtype=ms.float32) -> Parameter:
    """A learned [rows, dim] table of modulation offsets (diffusers initialises it randn / sqrt(dim))."""
    return Parameter(initializer(Normal(dim ** -0.5), (rows, dim), dtype), name="scale_shift_table")


class PixArtAlphaCombinedTimestepSizeEmbeddings(nn.Cell):
    """MLP of the 256-channel sinusoidal timestep; with additional conditions, plus the embedded resolution (h, w)
    and aspect ratio, each value through the same sinusoid then its own MLP to dim // 3 channels."""

    def __init__(self, embedding_dim: int, use_additional_conditions: bool = False, dtype=ms.float32):
        super().__init__()
        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.timestep_embedder = TimestepEmbedding(256, embedding_dim, dtype=dtype)
        self.use_additional_conditions = use_additional_conditions
        if use_additional_conditions:
            size_dim = embedding_dim // 3
            self.additional_condition_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
            self.resolution_embedder = TimestepEmbedding(256, size_dim, dtype=dtype)
            self.aspect_ratio_embedder = TimestepEmbedding(256, size_dim, dtype=dtype)

    def construct(self, timestep: Float[Tensor, "b"], resolution: Float[Tensor, "b 2"] = None,
                  aspect_ratio: Float[Tensor, "b 1"] = None) -> Float[Tensor, "b d"]:
        dtype = self.timestep_embedder.linear_1.weight.dtype
        emb = self.timestep_embedder(self.time_proj(timestep).astype(dtype))
        if not self.use_additional_conditions:
            return emb
        b = timestep.shape[0]
        res = self.additional_condition_proj(resolution.astype(ms.float32).reshape(-1)).astype(dtype)
        res = self.resolution_embedder(res).reshape(b, -1)
        ar = self.additional_condition_proj(aspect_ratio.astype(ms.float32).reshape(-1)).astype(dtype)
        ar = self.aspect_ratio_embedder(ar).reshape(b, -1)
        return emb + mops.concat([res, ar], axis=1)


class AdaLayerNormSingle(nn.Cell):
    """`emb` -> SiLU -> `linear` to the six block modulations [b, 6 * d]; also returns the embedding itself."""

    def __init__(self, embedding_dim: int, use_additional_conditions: bool = False, dtype=ms.float32):
        super().__init__()
        self.emb = PixArtAlphaCombinedTimestepSizeEmbeddings(embedding_dim, use_additional_conditions, dtype=dtype)
        self.linear = Linear(embedding_dim, 6 * embedding_dim, dtype=dtype)

    def construct(self, timestep: Float[Tensor, "b"], resolution: Tensor = None,
                  aspect_ratio: Tensor = None) -> tuple:
        embedded = self.emb(timestep, resolution, aspect_ratio)
        return self.linear(ops.silu(embedded)), embedded


class PixArtAlphaTextProjection(nn.Cell):
    """linear_1 -> tanh-GELU -> linear_2: caption embeddings to the transformer width."""

    def __init__(self, in_features: int, hidden_size: int, dtype=ms.float32):
        super().__init__()
        self.linear_1 = Linear(in_features, hidden_size, dtype=dtype)
        self.linear_2 = Linear(hidden_size, hidden_size, dtype=dtype)

    def construct(self, caption: Float[Tensor, "b m c"]) -> Float[Tensor, "b m d"]:
        return self.linear_2(ops.gelu(self.linear_1(caption), "tanh"))


class PixArtTransformerBlock(nn.Cell):
    """diffusers' BasicTransformerBlock(norm_type="ada_norm_single"): modulated, gated self-attention (norm1, attn1),
    un-normed cross-attention (attn2), modulated, gated feed-forward after norm2; shifts, scales and gates are the
    shared timestep modulation plus this block's `scale_shift_table`."""

    def __init__(self, dim: int, num_attention_heads: int, attention_head_dim: int, cross_attention_dim: int = None,
                 activation_fn: str = "gelu-approximate", attention_bias: bool = True,
                 norm_elementwise_affine: bool = False, norm_eps: float = 1e-6, dtype=ms.float32):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_elementwise_affine, dtype=dtype)
        self.attn1 = Attention(dim, None, num_attention_heads, attention_head_dim, bias=attention_bias, dtype=dtype)
        self.norm2 = LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_elementwise_affine, dtype=dtype)
        self.attn2 = None
        if cross_attention_dim is not None:
            self.attn2 = Attention(dim, cross_attention_dim, num_attention_heads, attention_head_dim,
                                   bias=attention_bias, dtype=dtype)
        self.ff = FeedForward(dim, activation_fn=activation_fn, dtype=dtype)
        self.scale_shift_table = scale_shift_table(6, dim, dtype)

    def construct(self, x: Float[Tensor, "b n d"], modulation: Float[Tensor, "b 6d"],
                  context: Float[Tensor, "b m d"] = None, context_mask: Tensor = None) -> Float[Tensor, "b n d"]:
        b, _, dim = x.shape
        mod = self.scale_shift_table[None] + modulation.reshape(b, 6, dim)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mops.unstack(mod, axis=1)
        x = gated(gate_msa, self.attn1(modulate(self.norm1(x), shift_msa, scale_msa))) + x
        if self.attn2 is not None:
            x = self.attn2(x, context, context_mask) + x
        return gated(gate_mlp, self.ff(modulate(self.norm2(x), shift_mlp, scale_mlp))) + x
