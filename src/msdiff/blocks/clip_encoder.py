"""The pre-norm transformer encoder of CLIP (transformers' `CLIPEncoder`), shared by its text and vision towers.

Parameter names equal transformers' (`layers.{i}.self_attn.q_proj`, `mlp.fc1`, `layer_norm1`, ...);
other ViT-style encoders with the same math (DPT's ViT) map their keys onto these names.
"""
import mindspore as ms
from mindspore import Tensor, nn

from .. import ops
from .layers import LayerNorm, Linear

ACTIVATIONS = ("quick_gelu", "gelu")


class CLIPAttention(nn.Cell):
    """Multi-head self-attention with an optional additive fp32 mask."""

    def __init__(self, dim: int, heads: int, dtype=ms.float32):
        super().__init__()
        self.heads = heads
        self.q_proj = Linear(dim, dim, dtype=dtype)
        self.k_proj = Linear(dim, dim, dtype=dtype)
        self.v_proj = Linear(dim, dim, dtype=dtype)
        self.out_proj = Linear(dim, dim, dtype=dtype)

    def construct(self, x: Tensor, mask: Tensor = None) -> Tensor:
        b, n, dim = x.shape
        shape = (b, n, self.heads, dim // self.heads)
        q = self.q_proj(x).reshape(shape).swapaxes(1, 2)
        k = self.k_proj(x).reshape(shape).swapaxes(1, 2)
        v = self.v_proj(x).reshape(shape).swapaxes(1, 2)
        out = ops.attention(q, k, v, mask=mask)
        return self.out_proj(out.swapaxes(1, 2).reshape(b, n, dim))


class CLIPMLP(nn.Cell):
    """fc1 -> quick_gelu | gelu -> fc2."""

    def __init__(self, dim: int, hidden: int, act: str, dtype=ms.float32):
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"CLIPMLP: activation {act!r} is not implemented (supported: {ACTIVATIONS})")
        self.quick = act == "quick_gelu"
        self.fc1 = Linear(dim, hidden, dtype=dtype)
        self.fc2 = Linear(hidden, dim, dtype=dtype)

    def construct(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        h = ops.quick_gelu(h) if self.quick else ops.gelu(h)
        return self.fc2(h)


class CLIPEncoderLayer(nn.Cell):
    """Pre-norm transformer layer: x + attn(ln1(x)), then + mlp(ln2(x))."""

    def __init__(self, dim: int, heads: int, hidden: int, act: str, eps: float, dtype=ms.float32):
        super().__init__()
        self.layer_norm1 = LayerNorm(dim, eps=eps, dtype=dtype)
        self.self_attn = CLIPAttention(dim, heads, dtype=dtype)
        self.layer_norm2 = LayerNorm(dim, eps=eps, dtype=dtype)
        self.mlp = CLIPMLP(dim, hidden, act, dtype=dtype)

    def construct(self, x: Tensor, mask: Tensor = None) -> Tensor:
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Cell):
    """Stack of encoder layers; `layers` indices equal transformers'. Returns (input, each layer's output)."""

    def __init__(self, num_layers: int, dim: int, heads: int, hidden: int, act: str, eps: float,
                 dtype=ms.float32):
        super().__init__()
        self.layers = nn.CellList([CLIPEncoderLayer(dim, heads, hidden, act, eps, dtype=dtype)
                                   for _ in range(num_layers)])

    def construct(self, x: Tensor, mask: Tensor = None):
        states = (x,)
        for layer in self.layers:
            x = layer(x, mask)
            states = states + (x,)
        return states


def encoder_from_config(c, dtype=ms.float32) -> CLIPEncoder:
    """CLIPEncoder sized by a config with transformers' CLIP field names (text or vision)."""
    return CLIPEncoder(c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size,
                       c.hidden_act, c.layer_norm_eps, dtype=dtype)
