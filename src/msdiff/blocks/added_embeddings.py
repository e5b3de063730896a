"""The UNet's extra conditioning embeddings of Kandinsky 2.1 / 2.2 and DeepFloyd IF (diffusers' embeddings.py).

Two kinds, with diffusers' class and attribute names so the parameter trees match:
- context projections (`encoder_hid_proj`): TextImageProjection (Kandinsky 2.1), ImageProjection (Kandinsky 2.2)
  turn text / image embeddings into the cross-attention tokens;
- time-embedding additions (`add_embedding`): TextTimeEmbedding (IF: attention-pooled text tokens),
  TextImageTimeEmbedding (Kandinsky 2.1), ImageTimeEmbedding (Kandinsky 2.2), ImageHintTimeEmbedding (Kandinsky
  2.2 ControlNet, which also embeds the hint image).
"""
import math

import mindspore as ms
from jaxtyping import Float
from mindspore import Parameter, Tensor, nn
from mindspore import ops as mops
from mindspore.common.initializer import Normal, initializer

from .. import ops
from .layers import Conv2d, LayerNorm, Linear


class TextImageProjection(nn.Cell):
    """Context = [image_embeds -> num_image_text_embeds tokens; text_proj(text tokens)] (Kandinsky 2.1)."""

    def __init__(self, text_embed_dim: int, image_embed_dim: int, cross_attention_dim: int,
                 num_image_text_embeds: int = 10, dtype=ms.float32):
        super().__init__()
        self.num_image_text_embeds = num_image_text_embeds
        self.image_embeds = Linear(image_embed_dim, num_image_text_embeds * cross_attention_dim, dtype=dtype)
        self.text_proj = Linear(text_embed_dim, cross_attention_dim, dtype=dtype)

    def construct(self, text_embeds: Float[Tensor, "b n t"],
                  image_embeds: Float[Tensor, "b i"]) -> Float[Tensor, "b k d"]:
        b = text_embeds.shape[0]
        image_tokens = self.image_embeds(image_embeds).reshape(b, self.num_image_text_embeds, -1)
        return mops.cat((image_tokens, self.text_proj(text_embeds)), axis=1)


class ImageProjection(nn.Cell):
    """Context = LayerNorm(image_embeds -> num_image_text_embeds tokens) (Kandinsky 2.2)."""

    def __init__(self, image_embed_dim: int, cross_attention_dim: int, num_image_text_embeds: int = 32,
                 dtype=ms.float32):
        super().__init__()
        self.num_image_text_embeds = num_image_text_embeds
        self.image_embeds = Linear(image_embed_dim, num_image_text_embeds * cross_attention_dim, dtype=dtype)
        self.norm = LayerNorm(cross_attention_dim, dtype=dtype)

    def construct(self, image_embeds: Float[Tensor, "b i"]) -> Float[Tensor, "b k d"]:
        b = image_embeds.shape[0]
        return self.norm(self.image_embeds(image_embeds).reshape(b, self.num_image_text_embeds, -1))


class AttentionPooling(nn.Cell):
    """One query token (mean of the tokens + a learned position) attends over [it; tokens] (IF's pooling).

    q and k are each scaled by d^-1/4 before the product, as IF does for fp16; softmax in fp32.
    """

    def __init__(self, num_heads: int, embed_dim: int, dtype=ms.float32):
        super().__init__()
        self.num_heads = num_heads
        self.positional_embedding = Parameter(initializer(Normal(embed_dim ** -0.5), (1, embed_dim), dtype),
                                              name="positional_embedding")
        self.k_proj = Linear(embed_dim, embed_dim, dtype=dtype)
        self.q_proj = Linear(embed_dim, embed_dim, dtype=dtype)
        self.v_proj = Linear(embed_dim, embed_dim, dtype=dtype)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, -1).swapaxes(1, 2)

    def construct(self, x: Float[Tensor, "b n d"]) -> Float[Tensor, "b d"]:
        b, _, d = x.shape
        cls = x.mean(axis=1, keep_dims=True) + self.positional_embedding.astype(x.dtype)
        x = mops.cat((cls, x), axis=1)
        q, k, v = self._heads(self.q_proj(cls)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        scale = 1.0 / math.sqrt(math.sqrt(d // self.num_heads))
        out = ops.attention(q * scale, k * scale, v, scale=1.0)
        return out.swapaxes(1, 2).reshape(b, d)


class TextTimeEmbedding(nn.Cell):
    """LayerNorm, attention pooling, projection, LayerNorm: text tokens -> a time-embedding addition (IF)."""

    def __init__(self, encoder_dim: int, time_embed_dim: int, num_heads: int = 64, dtype=ms.float32):
        super().__init__()
        self.norm1 = LayerNorm(encoder_dim, dtype=dtype)
        self.pool = AttentionPooling(num_heads, encoder_dim, dtype=dtype)
        self.proj = Linear(encoder_dim, time_embed_dim, dtype=dtype)
        self.norm2 = LayerNorm(time_embed_dim, dtype=dtype)

    def construct(self, x: Float[Tensor, "b n d"]) -> Float[Tensor, "b t"]:
        return self.norm2(self.proj(self.pool(self.norm1(x))))


class TextImageTimeEmbedding(nn.Cell):
    """LayerNorm(text_proj(text)) + image_proj(image) (Kandinsky 2.1)."""

    def __init__(self, text_embed_dim: int, image_embed_dim: int, time_embed_dim: int, dtype=ms.float32):
        super().__init__()
        self.text_proj = Linear(text_embed_dim, time_embed_dim, dtype=dtype)
        self.text_norm = LayerNorm(time_embed_dim, dtype=dtype)
        self.image_proj = Linear(image_embed_dim, time_embed_dim, dtype=dtype)

    def construct(self, text_embeds: Float[Tensor, "b e"], image_embeds: Float[Tensor, "b i"]) -> Float[Tensor, "b t"]:
        return self.image_proj(image_embeds) + self.text_norm(self.text_proj(text_embeds))


class ImageTimeEmbedding(nn.Cell):
    """LayerNorm(image_proj(image)) (Kandinsky 2.2)."""

    def __init__(self, image_embed_dim: int, time_embed_dim: int, dtype=ms.float32):
        super().__init__()
        self.image_proj = Linear(image_embed_dim, time_embed_dim, dtype=dtype)
        self.image_norm = LayerNorm(time_embed_dim, dtype=dtype)

    def construct(self, image_embeds: Float[Tensor, "b i"]) -> Float[Tensor, "b t"]:
        return self.image_norm(self.image_proj(image_embeds))


# (in, out, stride) of the hint encoder's convs; SiLU between them.
_HINT_CONVS = ((3, 16, 1), (16, 16, 1), (16, 32, 2), (32, 32, 1), (32, 96, 2), (96, 96, 1), (96, 256, 2),
               (256, 4, 1))


class ImageHintTimeEmbedding(ImageTimeEmbedding):
    """ImageTimeEmbedding plus `input_hint_block`: hint image [b, 3, H, W] -> [b, 4, H/8, W/8] (Kandinsky 2.2
    ControlNet); the Sequential's SiLUs hold the odd indices, so the convs are input_hint_block.0, .2, ..."""

    def __init__(self, image_embed_dim: int, time_embed_dim: int, dtype=ms.float32):
        super().__init__(image_embed_dim, time_embed_dim, dtype)
        layers = []
        for i, (c_in, c_out, stride) in enumerate(_HINT_CONVS):
            layers += [Conv2d(c_in, c_out, 3, stride=stride, padding=1, dtype=dtype)]
            if i < len(_HINT_CONVS) - 1:
                layers += [nn.Identity()]
        self.input_hint_block = nn.CellList(layers)

    def embed_hint(self, hint: Float[Tensor, "b 3 H W"]) -> Float[Tensor, "b 4 h w"]:
        """The hint image through the conv stack (SiLU between convs)."""
        for i in range(0, len(self.input_hint_block), 2):
            hint = self.input_hint_block[i](hint)
            if i < len(self.input_hint_block) - 1:
                hint = ops.silu(hint)
        return hint
