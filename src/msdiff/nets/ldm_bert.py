"""LDMBertModel: the pre-norm transformer text encoder of diffusers' LDMTextToImagePipeline.

Token + learned position embeddings, `encoder_layers` pre-LayerNorm blocks (bias-free q/k/v, head_dim
set independently of d_model, GELU MLP), final LayerNorm. `construct(input_ids, attention_mask=None)`
returns the last hidden state (what the pipeline uses); `to_logits` is loaded but not applied, as in
diffusers. Parameter names equal diffusers' (`model.layers.N.self_attn.q_proj.weight`, ...).
"""
import dataclasses
from dataclasses import dataclass

import mindspore as ms
from jaxtyping import Float, Int
from mindspore import Tensor, nn
from mindspore import ops as mops

from .. import ops
from ..blocks.layers import Embedding, LayerNorm, Linear
from ._config import TRANSFORMERS_QUIET_KEYS

_ACTIVATIONS = ("gelu",)
# Read by transformers' LDMBertConfig but unused by LDMBert's forward pass at inference.
_UNUSED = frozenset("num_hidden_layers encoder_layerdrop activation_dropout init_std classifier_dropout scale_embedding".split())


@dataclass(frozen=True)
class LDMBertConfig:
    """LDMBertConfig fields that shape inference (diffusers' defaults)."""

    vocab_size: int = 30522
    max_position_embeddings: int = 77
    encoder_layers: int = 32
    encoder_ffn_dim: int = 5120
    encoder_attention_heads: int = 8
    head_dim: int = 64
    activation_function: str = "gelu"
    d_model: int = 1280


def config_from_diffusers(d: dict) -> LDMBertConfig:
    """LDMBertConfig from the bert/config.json dict; ValueError names unsupported keys/values."""
    names = {f.name for f in dataclasses.fields(LDMBertConfig)}
    unknown = sorted(k for k in d if k not in names and k not in TRANSFORMERS_QUIET_KEYS and k not in _UNUSED
                     and not k.startswith("_") and k not in ("eos_token_id", "pruned_heads"))
    if unknown:
        raise ValueError(f"LDMBert config: keys not implemented by msdiff: {unknown}")
    if d.get("pruned_heads"):
        raise ValueError(f"LDMBert config: pruned_heads={d['pruned_heads']!r} is not implemented")
    cfg = LDMBertConfig(**{k: d[k] for k in names if k in d})
    if cfg.activation_function not in _ACTIVATIONS:
        raise ValueError(f"LDMBert config: activation_function={cfg.activation_function!r} is not implemented")
    return cfg


def map_weights(key: str) -> str:
    """diffusers state-dict key -> msdiff parameter name (identity: the trees match)."""
    return key


class LDMBertAttention(nn.Cell):
    """Multi-head self-attention with inner width heads * head_dim and bias-free q/k/v."""

    def __init__(self, c: LDMBertConfig, dtype=ms.float32):
        super().__init__()
        inner = c.encoder_attention_heads * c.head_dim
        self.heads, self.head_dim = c.encoder_attention_heads, c.head_dim
        self.q_proj = Linear(c.d_model, inner, bias=False, dtype=dtype)
        self.k_proj = Linear(c.d_model, inner, bias=False, dtype=dtype)
        self.v_proj = Linear(c.d_model, inner, bias=False, dtype=dtype)
        self.out_proj = Linear(inner, c.d_model, dtype=dtype)

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.heads, self.head_dim).transpose(0, 2, 1, 3)

    def construct(self, x: Float[Tensor, "b n d"], mask=None) -> Float[Tensor, "b n d"]:
        b, n, _ = x.shape
        q = self._split(self.q_proj(x) * (self.head_dim ** -0.5))
        out = ops.attention(q, self._split(self.k_proj(x)), self._split(self.v_proj(x)), mask=mask, scale=1.0)
        return self.out_proj(out.transpose(0, 2, 1, 3).reshape(b, n, self.heads * self.head_dim))


class LDMBertEncoderLayer(nn.Cell):
    """Pre-norm block: x + attn(LN(x)), then x + fc2(gelu(fc1(LN(x))))."""

    def __init__(self, c: LDMBertConfig, dtype=ms.float32):
        super().__init__()
        self.self_attn = LDMBertAttention(c, dtype)
        self.self_attn_layer_norm = LayerNorm(c.d_model, dtype=dtype)
        self.fc1 = Linear(c.d_model, c.encoder_ffn_dim, dtype=dtype)
        self.fc2 = Linear(c.encoder_ffn_dim, c.d_model, dtype=dtype)
        self.final_layer_norm = LayerNorm(c.d_model, dtype=dtype)

    def construct(self, x: Float[Tensor, "b n d"], mask=None) -> Float[Tensor, "b n d"]:
        x = x + self.self_attn(self.self_attn_layer_norm(x), mask)
        return x + self.fc2(ops.gelu(self.fc1(self.final_layer_norm(x))))


class LDMBertEncoder(nn.Cell):
    """Embeddings, encoder layers and the final LayerNorm."""

    def __init__(self, c: LDMBertConfig, dtype=ms.float32):
        super().__init__()
        self.embed_tokens = Embedding(c.vocab_size, c.d_model, dtype=dtype)
        self.embed_positions = Embedding(c.max_position_embeddings, c.d_model, dtype=dtype)
        self.layers = nn.CellList([LDMBertEncoderLayer(c, dtype) for _ in range(c.encoder_layers)])
        self.layer_norm = LayerNorm(c.d_model, dtype=dtype)

    def construct(self, input_ids: Tensor, attention_mask=None) -> Tensor:
        n = input_ids.shape[1]
        x = self.embed_tokens(input_ids) + self.embed_positions(mops.arange(n).reshape(1, n))
        mask = None
        if attention_mask is not None:
            mask = attention_mask.astype(ms.bool_).reshape(input_ids.shape[0], 1, 1, n)
        for layer in self.layers:
            x = layer(x, mask)
        return self.layer_norm(x)


class LDMBertModel(nn.Cell):
    """LDMBert text encoder: input_ids[b, n] (optional attention_mask, 1 = attend) -> hidden states[b, n, d]."""

    def __init__(self, config: LDMBertConfig, dtype=ms.float32):
        super().__init__()
        self.config = config
        self.compute_dtype = dtype
        self.model = LDMBertEncoder(config, dtype)
        self.to_logits = Linear(config.d_model, config.vocab_size, dtype=dtype)

    def construct(self, input_ids: Int[Tensor, "b n"], attention_mask=None) -> Float[Tensor, "b n d"]:
        return self.model(input_ids.astype(ms.int32), attention_mask)
