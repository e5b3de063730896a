"""GLIGEN (Li et al. 2023, "GLIGEN: Open-Set Grounded Text-to-Image Generation"): the Fourier box projections of
the grounding tokens (phrases, or phrases and reference images, in boxes) and the gated self-attention fuser
inserted after each transformer block's self-attention.

The grounding reaches the transformer blocks through their `context` argument: a UNet with attention_type
"gated" or "gated-text-image" passes (text context, grounding tokens, fuser scale) instead of the text context
alone, and `GatedTransformerBlock` unpacks it; the other blocks pass it on unchanged. The fuser scale is a per-call
float (1: fuser on, 0: off, diffusers' `enable_fuser(False)` after the scheduled-sampling steps), so a compiled
step serves every call; adding zero times the fuser's terms leaves the tokens exactly as they are.
"""
import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .. import ops
from .attention import Attention, BasicTransformerBlock, FeedForward
from .layers import LayerNorm, Linear, _param
from .transformer_2d import Transformer2DModel


# Kernels

def fourier_box_embedding(boxes: Float[Tensor, "b n 4"], freqs: int) -> Float[Tensor, "b n f"]:
    """[sin, cos](100^(k / freqs) * coordinate) of each box coordinate (xyxy), laid out as diffusers'
    get_fourier_embeds_from_boundingbox ([freq, sin/cos, coordinate] per box); computed in float32."""
    b, n = boxes.shape[0], boxes.shape[1]
    bands = Tensor((100.0 ** (np.arange(freqs, dtype=np.float32) / np.float32(freqs))).astype(np.float32))
    emb = boxes.astype(ms.float32).reshape(b, n, 4, 1) * bands.reshape(1, 1, 1, freqs)
    emb = mops.stack((mops.sin(emb), mops.cos(emb)), axis=-1)  # b n 4 f 2
    return emb.transpose(0, 1, 3, 4, 2).reshape(b, n, freqs * 2 * 4)


# Layers

def _mlp(in_dim: int, out_dim: int, dtype) -> nn.CellList:
    """diffusers' Sequential(Linear(in, 512), SiLU, Linear(512, 512), SiLU, Linear(512, out)) (indices 0, 2, 4)."""
    return nn.CellList([Linear(in_dim, 512, dtype=dtype), nn.Identity(), Linear(512, 512, dtype=dtype),
                        nn.Identity(), Linear(512, out_dim, dtype=dtype)])


def _run_mlp(mlp: nn.CellList, x: Tensor) -> Tensor:
    return mlp[4](ops.silu(mlp[2](ops.silu(mlp[0](x)))))


def _null_fill(x: Tensor, mask: Tensor, null: Tensor) -> Tensor:
    """x where mask is 1, the learned null feature where it is 0 (mask [b, n, 1])."""
    return x * mask + (1 - mask) * null.reshape(1, 1, -1)


def _box_tokens(boxes: Tensor, masks: Tensor, freqs: int, null: Tensor, dtype) -> Tensor:
    """Fourier embeddings of the boxes, the learned null position feature for padded objects (masks [b, n, 1])."""
    return _null_fill(fourier_box_embedding(boxes, freqs).astype(dtype), masks, null)


class GLIGENTextBoundingboxProjection(nn.Cell):
    """Grounding tokens from phrase embeddings and boxes (diffusers' GLIGENTextBoundingboxProjection, feature_type
    "text-only"): MLP([phrase embedding, Fourier box embedding]); padded objects (mask 0) get the null features.
    position_net(boxes[b, n, 4], masks[b, n], positive_embeddings[b, n, d]) -> objs[b, n, out_dim]."""

    def __init__(self, positive_len: int, out_dim: int, fourier_freqs: int = 8, dtype=ms.float32):
        super().__init__()
        self.freqs = fourier_freqs
        position_dim = fourier_freqs * 2 * 4
        self.compute_dtype = dtype
        self.linears = _mlp(positive_len + position_dim, out_dim, dtype)
        self.null_positive_feature = _param("zeros", (positive_len,), dtype, "null_positive_feature")
        self.null_position_feature = _param("zeros", (position_dim,), dtype, "null_position_feature")

    def construct(self, boxes: Float[Tensor, "b n 4"], masks: Float[Tensor, "b n"],
                  positive_embeddings: Float[Tensor, "b n d"]) -> Float[Tensor, "b n o"]:
        masks = masks.astype(self.compute_dtype).expand_dims(-1)
        xyxy = _box_tokens(boxes, masks, self.freqs, self.null_position_feature, self.compute_dtype)
        text = _null_fill(positive_embeddings.astype(self.compute_dtype), masks, self.null_positive_feature)
        return _run_mlp(self.linears, mops.cat((text, xyxy), axis=-1))


class GLIGENTextImageBoundingboxProjection(nn.Cell):
    """Grounding tokens from phrases and reference images in boxes (diffusers' GLIGENTextBoundingboxProjection,
    feature_type "text-image"): one MLP for [phrase embedding, box], one for [image embedding, box], each feature
    replaced by its learned null where its own mask is 0, the box by the null position where `masks` is 0; the
    tokens are [text objects, image objects]. position_net(boxes, masks, phrases_masks, image_masks,
    phrases_embeddings, image_embeddings) -> objs[b, 2n, out_dim]."""

    def __init__(self, positive_len: int, out_dim: int, fourier_freqs: int = 8, dtype=ms.float32):
        super().__init__()
        self.freqs = fourier_freqs
        position_dim = fourier_freqs * 2 * 4
        self.compute_dtype = dtype
        self.linears_text = _mlp(positive_len + position_dim, out_dim, dtype)
        self.linears_image = _mlp(positive_len + position_dim, out_dim, dtype)
        self.null_text_feature = _param("zeros", (positive_len,), dtype, "null_text_feature")
        self.null_image_feature = _param("zeros", (positive_len,), dtype, "null_image_feature")
        self.null_position_feature = _param("zeros", (position_dim,), dtype, "null_position_feature")

    def construct(self, boxes: Float[Tensor, "b n 4"], masks: Float[Tensor, "b n"],
                  phrases_masks: Float[Tensor, "b n"], image_masks: Float[Tensor, "b n"],
                  phrases_embeddings: Float[Tensor, "b n d"],
                  image_embeddings: Float[Tensor, "b n d"]) -> Float[Tensor, "b m o"]:
        dt = self.compute_dtype
        xyxy = _box_tokens(boxes, masks.astype(dt).expand_dims(-1), self.freqs, self.null_position_feature, dt)
        text = _null_fill(phrases_embeddings.astype(dt), phrases_masks.astype(dt).expand_dims(-1),
                          self.null_text_feature)
        image = _null_fill(image_embeddings.astype(dt), image_masks.astype(dt).expand_dims(-1),
                           self.null_image_feature)
        return mops.cat((_run_mlp(self.linears_text, mops.cat((text, xyxy), axis=-1)),
                         _run_mlp(self.linears_image, mops.cat((image, xyxy), axis=-1))), axis=1)


class GatedSelfAttentionDense(nn.Cell):
    """x + tanh(alpha_attn) * SelfAttn(LN([x, linear(objs)]))[:n_visual], then x + tanh(alpha_dense) * FF(LN(x));
    both terms times `scale` (the fuser switch)."""

    def __init__(self, query_dim: int, context_dim: int, n_heads: int, d_head: int, dtype=ms.float32):
        super().__init__()
        self.linear = Linear(context_dim, query_dim, dtype=dtype)
        self.attn = Attention(query_dim, heads=n_heads, dim_head=d_head, dtype=dtype)
        self.ff = FeedForward(query_dim, activation_fn="geglu", dtype=dtype)
        self.norm1 = LayerNorm(query_dim, dtype=dtype)
        self.norm2 = LayerNorm(query_dim, dtype=dtype)
        self.alpha_attn = _param("zeros", (), dtype, "alpha_attn")
        self.alpha_dense = _param("zeros", (), dtype, "alpha_dense")

    def construct(self, x: Float[Tensor, "b n c"], objs: Float[Tensor, "b m d"],
                  scale: Tensor) -> Float[Tensor, "b n c"]:
        n_visual = x.shape[1]
        scale = scale.astype(x.dtype)
        objs = self.linear(objs.astype(x.dtype))
        attn = self.attn(self.norm1(mops.cat((x, objs), axis=1)))[:, :n_visual, :]
        x = x + scale * (mops.tanh(self.alpha_attn) * attn)
        return x + scale * (mops.tanh(self.alpha_dense) * self.ff(self.norm2(x)))


class GatedTransformerBlock(nn.Cell):
    """A BasicTransformerBlock with the GLIGEN fuser after its self-attention (diffusers' BasicTransformerBlock with
    attention_type "gated"); takes the block's own sub-cells, so parameter names stay diffusers' (attn1, ..., fuser).
    context: the text context alone (fuser not run, as diffusers without gligen kwargs) or (context, objs, scale)."""

    def __init__(self, block: BasicTransformerBlock, dtype=ms.float32):
        super().__init__()
        self.only_cross_attention = block.only_cross_attention
        self.norm1, self.attn1, self.norm2, self.attn2 = block.norm1, block.attn1, block.norm2, block.attn2
        self.norm3, self.ff = block.norm3, block.ff
        dim = block.norm1.weight.shape[0]
        heads = block.attn1.heads
        context_dim = block.attn2.to_k.weight.shape[1]  # the block's cross_attention_dim
        self.fuser = GatedSelfAttentionDense(dim, context_dim, heads, block.attn1.to_q.weight.shape[0] // heads,
                                             dtype=dtype)

    def construct(self, x: Float[Tensor, "b n c"], context=None) -> Float[Tensor, "b n c"]:
        grounding = isinstance(context, tuple)
        text = context[0] if grounding else context
        x = self.attn1(self.norm1(x), text if self.only_cross_attention else None) + x
        if grounding:
            x = self.fuser(x, context[1], context[2])
        if self.attn2 is not None:
            x = self.attn2(self.norm2(x), text) + x
        return self.ff(self.norm3(x)) + x


def add_fusers(net: nn.Cell, dtype=ms.float32) -> int:
    """Replace every BasicTransformerBlock of every Transformer2DModel inside `net` by a GatedTransformerBlock
    (the GLIGEN UNet's blocks), every Parameter then named by its path in `net`; returns how many were gated."""
    count = 0
    for cell in [c for _, c in net.cells_and_names() if isinstance(c, Transformer2DModel)]:
        blocks = [GatedTransformerBlock(b, dtype) for b in cell.transformer_blocks]
        cell.transformer_blocks = nn.CellList(blocks)
        count += len(blocks)
    for name, param in net.parameters_and_names():  # inserted cells rename their Parameters: name them by path
        param.name = name
    return count


def position_net(attention_type: str, cross_attention_dim, dtype=ms.float32) -> nn.Cell:
    """The GLIGEN UNet's position_net: phrases in boxes for attention_type "gated", phrases and / or reference images
    in boxes for "gated-text-image" (diffusers' _set_pos_net_if_use_gligen)."""
    kinds = {"gated": GLIGENTextBoundingboxProjection, "gated-text-image": GLIGENTextImageBoundingboxProjection}
    if attention_type not in kinds:
        raise ValueError(f"GLIGEN attention_type {attention_type!r} is not supported by msdiff (only {sorted(kinds)})")
    dim = cross_attention_dim if isinstance(cross_attention_dim, int) else cross_attention_dim[0]
    return kinds[attention_type](dim, dim, dtype=dtype)
