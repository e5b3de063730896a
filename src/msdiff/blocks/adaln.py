"""adaLN-Zero conditioning (Peebles & Xie 2023, DiT sec. 3.2): timestep + class embedding, the modulated
LayerNorm that also emits the residual gates, and the DiT transformer block built on it."""
import mindspore as ms
from jaxtyping import Float, Int
from mindspore import Tensor, nn

from .. import ops
from .attention import Attention, FeedForward
from .embeddings import TimestepEmbedding, Timesteps
from .layers import Embedding, LayerNorm, Linear


class LabelEmbedding(nn.Cell):
    """`embedding_table` of num_classes + 1 rows; the last row is the "null" class of classifier-free guidance.

    Training-time label dropout (diffusers' token_drop) is not applied: at inference callers pass the null
    label (= num_classes) explicitly.
    """

    def __init__(self, num_classes: int, hidden_size: int, dtype=ms.float32):
        super().__init__()
        self.embedding_table = Embedding(num_classes + 1, hidden_size, dtype=dtype)

    def construct(self, labels: Int[Tensor, "b"]) -> Float[Tensor, "b d"]:
        return self.embedding_table(labels)


class CombinedTimestepLabelEmbeddings(nn.Cell):
    """MLP of the 256-channel sinusoidal timestep embedding, plus the class embedding (DiT's conditioning c)."""

    def __init__(self, num_classes: int, embedding_dim: int, dtype=ms.float32):
        super().__init__()
        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=1)
        self.timestep_embedder = TimestepEmbedding(256, embedding_dim, dtype=dtype)
        self.class_embedder = LabelEmbedding(num_classes, embedding_dim, dtype=dtype)

    def construct(self, timestep: Float[Tensor, "b"], class_labels: Int[Tensor, "b"]) -> Float[Tensor, "b d"]:
        dtype = self.timestep_embedder.linear_1.weight.dtype
        t_emb = self.timestep_embedder(self.time_proj(timestep).astype(dtype))
        return t_emb + self.class_embedder(class_labels)


def modulate(x: Float[Tensor, "b n d"], shift: Float[Tensor, "b d"], scale: Float[Tensor, "b d"]) -> Tensor:
    """x * (1 + scale) + shift, the per-sample affine of adaptive LayerNorm."""
    return x * ops.expand_as(1 + scale[:, None], x) + ops.expand_as(shift[:, None], x)


def gated(gate: Float[Tensor, "b d"], y: Float[Tensor, "b n d"]) -> Tensor:
    """gate * y per sample: the residual gates of adaLN blocks (expand_as: see ops.layout on graph memory)."""
    return ops.expand_as(gate[:, None], y) * y


class AdaLayerNormZero(nn.Cell):
    """Conditioning `emb` -> SiLU -> `linear` to six vectors; LayerNorm (no affine, eps 1e-6) modulated by the
    first two. Returns the normed input and (gate_msa, shift_mlp, scale_mlp, gate_mlp)."""

    def __init__(self, embedding_dim: int, num_embeddings: int, dtype=ms.float32):
        super().__init__()
        self.emb = CombinedTimestepLabelEmbeddings(num_embeddings, embedding_dim, dtype=dtype)
        self.linear = Linear(embedding_dim, 6 * embedding_dim, dtype=dtype)
        self.norm = LayerNorm(embedding_dim, eps=1e-6, elementwise_affine=False, dtype=dtype)

    def construct(self, x: Float[Tensor, "b n d"], timestep: Float[Tensor, "b"],
                  class_labels: Int[Tensor, "b"]) -> tuple:
        cond = self.linear(ops.silu(self.emb(timestep, class_labels)))
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = cond.chunk(6, axis=1)
        return modulate(self.norm(x), shift_msa, scale_msa), (gate_msa, shift_mlp, scale_mlp, gate_mlp)


class AdaLNZeroTransformerBlock(nn.Cell):
    """DiT block: gated self-attention and gated feed-forward, each after an adaLN-modulated LayerNorm.

    Names follow diffusers' BasicTransformerBlock(norm_type="ada_norm_zero"): norm1 (AdaLayerNormZero),
    attn1, norm3, ff; it has no cross-attention (norm2 / attn2).
    """

    def __init__(self, dim: int, num_attention_heads: int, attention_head_dim: int, num_embeds_ada_norm: int,
                 activation_fn: str = "gelu-approximate", attention_bias: bool = True,
                 norm_elementwise_affine: bool = False, norm_eps: float = 1e-5, dtype=ms.float32):
        super().__init__()
        self.norm1 = AdaLayerNormZero(dim, num_embeds_ada_norm, dtype=dtype)
        self.attn1 = Attention(dim, None, num_attention_heads, attention_head_dim, bias=attention_bias,
                               dtype=dtype)
        self.norm3 = LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_elementwise_affine, dtype=dtype)
        self.ff = FeedForward(dim, activation_fn=activation_fn, dtype=dtype)

    def construct(self, x: Float[Tensor, "b n d"], timestep: Float[Tensor, "b"],
                  class_labels: Int[Tensor, "b"]) -> Float[Tensor, "b n d"]:
        h, (gate_msa, shift_mlp, scale_mlp, gate_mlp) = self.norm1(x, timestep, class_labels)
        x = gated(gate_msa, self.attn1(h)) + x
        h = modulate(self.norm3(x), shift_mlp, scale_mlp)
        return gated(gate_mlp, self.ff(h)) + x
