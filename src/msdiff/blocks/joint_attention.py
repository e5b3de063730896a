"""MMDiT blocks (Esser et al. 2024, Stable Diffusion 3 sec. 4): joint attention over image and text tokens,
each stream with its own projections, adaLN-Zero modulations and feed-forward; the timestep + pooled-text
conditioning; the continuous adaptive LayerNorm of the last context block and the output head.

Parameter names follow diffusers' JointTransformerBlock / Attention(added_kv_proj_dim=...) /
AdaLayerNormZero(num_embeddings=None) / SD35AdaLayerNormZeroX / AdaLayerNormContinuous /
CombinedTimestepTextProjEmbeddings.
"""
import mindspore as ms
from jaxtyping import Float
from mindspore import Parameter, Tensor, nn
from mindspore import ops as mops

from .. import ops
from .adaln import gated, modulate
from .attention import FeedForward
from .embeddings import TimestepEmbedding, Timesteps
from .layers import Conv2d, LayerNorm, Linear, _param
from .patch_embed import sincos_pos_embed_2d

QK_NORMS = (None, "rms_norm")


class RMSNorm(nn.Cell):
    """RMSNorm over the last axis with a learned `weight` (diffusers' RMSNorm, elementwise_affine=True): the
    normalised value is rounded to the input dtype before the weight multiplies it, as diffusers does."""

    def __init__(self, dim: int, eps: float = 1e-6, dtype=ms.float32):
        super().__init__()
        self.eps = eps
        self.weight = _param("ones", (dim,), dtype, "weight")

    def construct(self, x: Tensor) -> Tensor:
        return ops.rms_norm(x, None, self.eps).astype(self.weight.dtype) * self.weight


def _qk_norm(kind, dim_head: int, dtype):
    """The per-head query / key norm of `qk_norm` (None or "rms_norm", eps 1e-6 as SD3's blocks)."""
    if kind not in QK_NORMS:
        raise ValueError(f"JointAttention: unsupported qk_norm {kind!r} (supported: {QK_NORMS})")
    return RMSNorm(dim_head, 1e-6, dtype) if kind == "rms_norm" else None


def _heads(x: Tensor, heads: int, norm) -> Tensor:
    """[b, n, h * d] -> [b, h, n, d], then the optional per-head norm."""
    b, n, _ = x.shape
    x = ops.swapaxes(x.reshape(b, n, heads, -1), 1, 2)
    return x if norm is None else norm(x)


def _merge(x: Tensor) -> Tensor:
    """[b, h, n, d] -> [b, n, h * d]."""
    b, _, n, _ = x.shape
    return ops.swapaxes(x, 1, 2).reshape(b, n, -1)


class SelfAttention(nn.Cell):
    """Self-attention with optional per-head q / k norms (the `attn2` of SD3.5's dual-attention blocks)."""

    def __init__(self, dim: int, heads: int, dim_head: int, qk_norm=None, dtype=ms.float32):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.to_q = Linear(dim, inner, dtype=dtype)
        self.to_k = Linear(dim, inner, dtype=dtype)
        self.to_v = Linear(dim, inner, dtype=dtype)
        self.norm_q = _qk_norm(qk_norm, dim_head, dtype)
        self.norm_k = _qk_norm(qk_norm, dim_head, dtype)
        self.to_out = nn.CellList([Linear(inner, dim, dtype=dtype)])

    def construct(self, x: Float[Tensor, "b n c"]) -> Float[Tensor, "b n c"]:
        q = _heads(self.to_q(x), self.heads, self.norm_q)
        k = _heads(self.to_k(x), self.heads, self.norm_k)
        v = _heads(self.to_v(x), self.heads, None)
        return self.to_out[0](_merge(ops.attention(q, k, v, scale=self.scale)))


class JointAttention(SelfAttention):
    """One softmax over [image tokens | text tokens]: `to_q/k/v` for the image stream, `add_q/k/v_proj` for the
    text stream, `to_out.0` and (unless context_pre_only) `to_add_out` back to each (diffusers' JointAttnProcessor2_0).
    Returns (image output, text output or None)."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_pre_only: bool = False, qk_norm=None,
                 dtype=ms.float32):
        super().__init__(dim, heads, dim_head, qk_norm, dtype)  # the image stream: to_q/k/v, norm_q/k, to_out
        inner = heads * dim_head
        self.add_q_proj = Linear(dim, inner, dtype=dtype)
        self.add_k_proj = Linear(dim, inner, dtype=dtype)
        self.add_v_proj = Linear(dim, inner, dtype=dtype)
        self.norm_added_q = _qk_norm(qk_norm, dim_head, dtype)
        self.norm_added_k = _qk_norm(qk_norm, dim_head, dtype)
        self.to_add_out = None if context_pre_only else Linear(inner, dim, dtype=dtype)

    def construct(self, x: Float[Tensor, "b n c"], context: Float[Tensor, "b m c"]) -> tuple:
        n = x.shape[1]
        h = self.heads
        q = mops.concat([_heads(self.to_q(x), h, self.norm_q), _heads(self.add_q_proj(context), h, self.norm_added_q)],
                        axis=2)
        k = mops.concat([_heads(self.to_k(x), h, self.norm_k), _heads(self.add_k_proj(context), h, self.norm_added_k)],
                        axis=2)
        v = mops.concat([_heads(self.to_v(x), h, None), _heads(self.add_v_proj(context), h, None)], axis=2)
        out = _merge(ops.attention(q, k, v, scale=self.scale))
        x_out = self.to_out[0](out[:, :n])
        if self.to_add_out is None:
            return x_out, None
        return x_out, self.to_add_out(out[:, n:])


class AdaLNZeroModulation(nn.Cell):
    """`linear` of SiLU(conditioning) to `rows` modulation vectors, and the affine-free LayerNorm (eps 1e-6) they
    modulate: diffusers' AdaLayerNormZero(num_embeddings=None) (6 rows) and SD35AdaLayerNormZeroX (9 rows).
    Returns (normed input, the rows as a tuple)."""

    def __init__(self, dim: int, rows: int = 6, dtype=ms.float32):
        super().__init__()
        self.rows = rows
        self.linear = Linear(dim, rows * dim, dtype=dtype)
        self.norm = LayerNorm(dim, eps=1e-6, elementwise_affine=False, dtype=dtype)

    def construct(self, x: Float[Tensor, "b n d"], emb: Float[Tensor, "b d"]) -> tuple:
        return self.norm(x), self.linear(ops.silu(emb)).chunk(self.rows, axis=1)


class AdaLayerNormContinuous(nn.Cell):
    """LayerNorm (no affine, eps 1e-6) * (1 + scale) + shift with (scale, shift) = `linear`(SiLU(conditioning))."""

    def __init__(self, dim: int, conditioning_dim: int, dtype=ms.float32):
        super().__init__()
        self.linear = Linear(conditioning_dim, 2 * dim, dtype=dtype)
        self.norm = LayerNorm(dim, eps=1e-6, elementwise_affine=False, dtype=dtype)

    def construct(self, x: Float[Tensor, "b n d"], emb: Float[Tensor, "b e"]) -> Float[Tensor, "b n d"]:
        scale, shift = self.linear(ops.silu(emb).astype(x.dtype)).chunk(2, axis=1)
        return modulate(self.norm(x), shift, scale)


class TextProjection(nn.Cell):
    """linear_1 -> SiLU -> linear_2 (diffusers' PixArtAlphaTextProjection with act_fn="silu")."""

    def __init__(self, in_features: int, hidden_size: int, dtype=ms.float32):
        super().__init__()
        self.linear_1 = Linear(in_features, hidden_size, dtype=dtype)
        self.linear_2 = Linear(hidden_size, hidden_size, dtype=dtype)

    def construct(self, x: Float[Tensor, "b c"]) -> Float[Tensor, "b d"]:
        return self.linear_2(ops.silu(self.linear_1(x)))


class CombinedTimestepTextProjEmbeddings(nn.Cell):
    """MLP of the 256-channel sinusoidal timestep plus the projected pooled text embedding (SD3's conditioning)."""

    def __init__(self, embedding_dim: int, pooled_projection_dim: int, dtype=ms.float32):
        super().__init__()
        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.timestep_embedder = TimestepEmbedding(256, embedding_dim, dtype=dtype)
        self.text_embedder = TextProjection(pooled_projection_dim, embedding_dim, dtype=dtype)

    def construct(self, timestep: Float[Tensor, "b"], pooled: Float[Tensor, "b p"]) -> Float[Tensor, "b d"]:
        t_emb = self.timestep_embedder(self.time_proj(timestep).astype(pooled.dtype))
        return t_emb + self.text_embedder(pooled)


class JointTransformerBlock(nn.Cell):
    """MMDiT block: adaLN-Zero on both streams, joint attention, gated residuals, a tanh-GELU feed-forward per stream.

    context_pre_only (the last block): the text stream only feeds the attention (AdaLayerNormContinuous, no
    to_add_out / norm2_context / ff_context) and the block returns None for it. use_dual_attention (SD3.5):
    norm1 emits three more rows for a second, image-only self-attention `attn2` on the same normed tokens.
    """

    def __init__(self, dim: int, heads: int, dim_head: int, context_pre_only: bool = False, qk_norm=None,
                 use_dual_attention: bool = False, dtype=ms.float32):
        super().__init__()
        self.context_pre_only = context_pre_only
        self.norm1 = AdaLNZeroModulation(dim, 9 if use_dual_attention else 6, dtype=dtype)
        self.norm1_context = (AdaLayerNormContinuous(dim, dim, dtype=dtype) if context_pre_only
                              else AdaLNZeroModulation(dim, 6, dtype=dtype))
        self.attn = JointAttention(dim, heads, dim_head, context_pre_only, qk_norm, dtype=dtype)
        self.attn2 = SelfAttention(dim, heads, dim_head, qk_norm, dtype=dtype) if use_dual_attention else None
        self.norm2 = LayerNorm(dim, eps=1e-6, elementwise_affine=False, dtype=dtype)
        self.ff = FeedForward(dim, dim, activation_fn="gelu-approximate", dtype=dtype)
        if not context_pre_only:
            self.norm2_context = LayerNorm(dim, eps=1e-6, elementwise_affine=False, dtype=dtype)
            self.ff_context = FeedForward(dim, dim, activation_fn="gelu-approximate", dtype=dtype)

    def construct(self, x: Float[Tensor, "b n d"], context: Float[Tensor, "b m d"], temb: Float[Tensor, "b d"]):
        normed, rows = self.norm1(x, temb)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = rows[:6]
        h = modulate(normed, shift_msa, scale_msa)
        if self.context_pre_only:
            c_h = self.norm1_context(context, temb)
        else:
            c_normed, c_rows = self.norm1_context(context, temb)
            c_shift_msa, c_scale_msa, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = c_rows
            c_h = modulate(c_normed, c_shift_msa, c_scale_msa)

        attn_out, context_attn_out = self.attn(h, c_h)
        x = x + gated(gate_msa, attn_out)
        if self.attn2 is not None:
            shift_msa2, scale_msa2, gate_msa2 = rows[6:]
            x = x + gated(gate_msa2, self.attn2(modulate(normed, shift_msa2, scale_msa2)))
        x = x + gated(gate_mlp, self.ff(modulate(self.norm2(x), shift_mlp, scale_mlp)))
        if self.context_pre_only:
            return x, None

        context = context + gated(c_gate_msa, context_attn_out)
        c_h = modulate(self.norm2_context(context), c_shift_mlp, c_scale_mlp)
        return x, context + gated(c_gate_mlp, self.ff_context(c_h))


class CroppedPatchEmbed(nn.Cell):
    """`proj` (patch_size-strided conv) to tokens plus the centre crop of a max_size x max_size position table
    `pos_embed` for the input's grid (diffusers' PatchEmbed with pos_embed_max_size, SD3).

    The table is a checkpoint buffer (diffusers saves it), so it is a frozen Parameter loaded with the weights;
    it starts as the 2D sin-cos table diffusers builds (base size = sample grid, interpolation scale 1).
    """

    def __init__(self, sample_size: int, patch_size: int, in_channels: int, embed_dim: int, max_size: int,
                 dtype=ms.float32):
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.max_size = max_size
        self.proj = Conv2d(in_channels, embed_dim, patch_size, stride=patch_size, dtype=dtype)
        table = sincos_pos_embed_2d(embed_dim, max_size, max_size, sample_size // patch_size, 1.0)
        self.pos_embed = Parameter(Tensor(table[None], dtype), name="pos_embed", requires_grad=False)

    def construct(self, x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b n d"]:
        b, _, h, w = x.shape
        gh, gw = h // self.patch_size, w // self.patch_size
        tokens = ops.swapaxes(self.proj(x).reshape(b, self.embed_dim, gh * gw), 1, 2)
        top, left = (self.max_size - gh) // 2, (self.max_size - gw) // 2
        grid = self.pos_embed.reshape(1, self.max_size, self.max_size, self.embed_dim)
        pos = grid[:, top:top + gh, left:left + gw].reshape(1, gh * gw, self.embed_dim)
        return tokens + pos.astype(tokens.dtype)
