"""T5 text encoder (transformers 4.57 `T5EncoderModel`; Raffel et al. 2020, T5 v1.1 / flan gated-GELU).

`net(input_ids[b, n], attention_mask[b, n] = None)` returns last_hidden_state[b, n, d_model] (after
`encoder.final_layer_norm`) as one Tensor, the element PixArt and SD3 pipelines take from transformers'
output. Attention is unscaled (T5 folds 1/sqrt(d) into its initialisation); every layer adds the
relative position bias of the first layer's `relative_attention_bias` table, bucketed as Mesh
TensorFlow does. As transformers: T5LayerNorm is an RMS norm computed in fp32; the feed-forward output
projection `wo` stays in fp32 in a float16 net (`_keep_in_fp32_modules`), which makes the residual
stream fp32 after the first block; a float16 residual is clamped to the float16 range.
"""
import math
from dataclasses import dataclass, fields

import mindspore as ms
import numpy as np
from jaxtyping import Float, Int
from mindspore import Parameter, Tensor, nn
from mindspore import ops as mops
from mindspore.common.initializer import initializer
from mindspore.ops import constexpr

from .. import ops
from ..blocks.layers import Embedding, Linear
from ._config import TRANSFORMERS_QUIET_KEYS

_FP16_MAX = float(np.finfo(np.float16).max)
_FP32_MIN = float(np.finfo(np.float32).min)

# feed_forward_proj -> (gated, activation); transformers maps "gated-gelu" to its tanh "gelu_new".
_FEED_FORWARD = {"relu": (False, "relu"), "gated-gelu": (True, "gelu_new"), "gated-gelu_new": (True, "gelu_new")}
# T5Config keys that do not change the encoder's inference (decoder size, dropout, derived act fields).
_QUIET = frozenset(("dropout_rate", "classifier_dropout", "num_decoder_layers", "eos_token_id", "output_past",
                    "n_positions", "is_gated_act", "dense_act_fn"))


@dataclass(frozen=True)
class T5Config:
    """The encoder-defining fields of a transformers T5Config (defaults: transformers' T5Config)."""

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"


def config_from_diffusers(d: dict) -> T5Config:
    """T5Config from a transformers T5 config.json (missing keys: transformers' defaults)."""
    if d.get("model_type", "t5") not in ("t5", "umt5"):
        raise ValueError(f"T5 config: model_type {d.get('model_type')!r} is not 't5'")
    if d.get("model_type") == "umt5":
        raise ValueError("T5 config: model_type 'umt5' (per-layer relative bias) is not implemented by msdiff")
    if d.get("pruned_heads"):
        raise ValueError(f"T5 config: pruned_heads={d['pruned_heads']!r} is not implemented")
    names = {f.name for f in fields(T5Config)}
    unknown = sorted(k for k in d if k not in names and k not in TRANSFORMERS_QUIET_KEYS and k not in _QUIET
                     and k != "pruned_heads" and not k.startswith("_"))
    if unknown:
        raise ValueError(f"T5 config: keys not implemented by msdiff: {unknown}")
    if d.get("feed_forward_proj", "relu") not in _FEED_FORWARD:
        raise ValueError(f"T5 config: feed_forward_proj={d['feed_forward_proj']!r} is not implemented "
                         f"(supported: {sorted(_FEED_FORWARD)})")
    gated, act = _FEED_FORWARD[d.get("feed_forward_proj", "relu")]
    if d.get("dense_act_fn", act) != act or d.get("is_gated_act", gated) != gated:
        raise ValueError(f"T5 config: dense_act_fn={d.get('dense_act_fn')!r} / is_gated_act="
                         f"{d.get('is_gated_act')!r} disagree with feed_forward_proj={d.get('feed_forward_proj')!r}")
    return T5Config(**{k: v for k, v in d.items() if k in names})


def map_weights(key: str):
    """transformers key -> msdiff name; `encoder.embed_tokens.weight` (always tied to `shared.weight`) is dropped."""
    return None if key == "encoder.embed_tokens.weight" else key


def relative_position_buckets(n: int, m: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """int32 [n, m] bucket of (key - query) offsets, bidirectional (Mesh TF / transformers, float32 log bins)."""
    rel = np.arange(m, dtype=np.int64)[None, :] - np.arange(n, dtype=np.int64)[:, None]
    half = num_buckets // 2
    buckets = (rel > 0).astype(np.int64) * half
    rel = np.abs(rel)
    max_exact = half // 2
    with np.errstate(divide="ignore"):
        log_ratio = np.log(rel.astype(np.float32) / np.float32(max_exact))
    scaled = log_ratio / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact)
    large = np.minimum(max_exact + np.where(rel < max_exact, 0, scaled).astype(np.int64), half - 1)
    return (buckets + np.where(rel < max_exact, rel, large)).astype(np.int32)


@constexpr
def _buckets(n: int, num_buckets: int, max_distance: int) -> tuple:
    """The bucket table as nested tuples; constexpr so any sequence length works under mindspore.jit."""
    return tuple(map(tuple, relative_position_buckets(n, n, num_buckets, max_distance).tolist()))


class T5LayerNorm(nn.Cell):
    """Scale-only RMS norm over the last axis, fp32 statistics (transformers' T5LayerNorm)."""

    def __init__(self, dim: int, eps: float = 1e-6, dtype=ms.float32):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(initializer("ones", (dim,), dtype), name="weight")

    def construct(self, x: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        return ops.rms_norm(x, self.weight, self.eps).astype(self.weight.dtype)


class T5Attention(nn.Cell):
    """Unscaled multi-head self-attention (q, k, v, o without bias); the first layer owns the bias table."""

    def __init__(self, c: T5Config, has_relative_bias: bool, dtype=ms.float32):
        super().__init__()
        self.heads, inner = c.num_heads, c.num_heads * c.d_kv
        self.q = Linear(c.d_model, inner, bias=False, dtype=dtype)
        self.k = Linear(c.d_model, inner, bias=False, dtype=dtype)
        self.v = Linear(c.d_model, inner, bias=False, dtype=dtype)
        self.o = Linear(inner, c.d_model, bias=False, dtype=dtype)
        self.relative_attention_bias = (Embedding(c.relative_attention_num_buckets, c.num_heads, dtype=dtype)
                                        if has_relative_bias else None)

    def construct(self, x: Float[Tensor, "b n d"], bias: Float[Tensor, "b h n n"]) -> Float[Tensor, "b n d"]:
        b, n, _ = x.shape
        q = self.q(x).reshape(b, n, self.heads, -1).swapaxes(1, 2)
        k = self.k(x).reshape(b, n, self.heads, -1).swapaxes(1, 2)
        v = self.v(x).reshape(b, n, self.heads, -1).swapaxes(1, 2)
        out = ops.attention(q, k, v, mask=bias, scale=1.0)
        return self.o(out.swapaxes(1, 2).reshape(b, n, -1))


class T5LayerSelfAttention(nn.Cell):
    """Pre-norm self-attention sub-layer: the attention of layer_norm(x) (residual added by the block)."""

    def __init__(self, c: T5Config, has_relative_bias: bool, dtype=ms.float32):
        super().__init__()
        self.SelfAttention = T5Attention(c, has_relative_bias, dtype=dtype)
        self.layer_norm = T5LayerNorm(c.d_model, c.layer_norm_epsilon, dtype=dtype)

    def construct(self, x: Tensor, bias: Tensor) -> Tensor:
        return self.SelfAttention(self.layer_norm(x), bias)


class T5DenseGatedActDense(nn.Cell):
    """gelu_tanh(wi_0 x) * wi_1 x -> wo; wo is kept in fp32 (input cast up), as transformers keeps it."""

    def __init__(self, c: T5Config, dtype=ms.float32):
        super().__init__()
        self.wi_0 = Linear(c.d_model, c.d_ff, bias=False, dtype=dtype)
        self.wi_1 = Linear(c.d_model, c.d_ff, bias=False, dtype=dtype)
        self.wo = Linear(c.d_ff, c.d_model, bias=False, dtype=ms.float32)

    def construct(self, x: Tensor) -> Tensor:
        h = ops.gelu(self.wi_0(x), "tanh") * self.wi_1(x)
        return self.wo(h.astype(ms.float32))


class T5DenseActDense(nn.Cell):
    """relu(wi x) -> wo; wo kept in fp32 as in the gated form."""

    def __init__(self, c: T5Config, dtype=ms.float32):
        super().__init__()
        self.wi = Linear(c.d_model, c.d_ff, bias=False, dtype=dtype)
        self.wo = Linear(c.d_ff, c.d_model, bias=False, dtype=ms.float32)

    def construct(self, x: Tensor) -> Tensor:
        return self.wo(mops.relu(self.wi(x)).astype(ms.float32))


class T5LayerFF(nn.Cell):
    """Pre-norm feed-forward sub-layer (residual added by the block)."""

    def __init__(self, c: T5Config, dtype=ms.float32):
        super().__init__()
        gated = _FEED_FORWARD[c.feed_forward_proj][0]
        self.DenseReluDense = (T5DenseGatedActDense if gated else T5DenseActDense)(c, dtype=dtype)
        self.layer_norm = T5LayerNorm(c.d_model, c.layer_norm_epsilon, dtype=dtype)

    def construct(self, x: Tensor) -> Tensor:
        return self.DenseReluDense(self.layer_norm(x))


def _clamp_fp16(x: Tensor) -> Tensor:
    """transformers' fp16 guard: clip to the fp16 range (1000 below it once anything overflowed)."""
    if x.dtype != ms.float16:
        return x
    limit = mops.select(mops.isinf(x).any(), Tensor(_FP16_MAX - 1000, ms.float16), Tensor(_FP16_MAX, ms.float16))
    return mops.clamp(x, -limit, limit)


class T5Block(nn.Cell):
    """`layer.0` self-attention and `layer.1` feed-forward, each added to the residual stream."""

    def __init__(self, c: T5Config, has_relative_bias: bool, dtype=ms.float32):
        super().__init__()
        self.layer = nn.CellList([T5LayerSelfAttention(c, has_relative_bias, dtype=dtype), T5LayerFF(c, dtype=dtype)])

    def construct(self, x: Tensor, bias: Tensor) -> Tensor:
        attn = self.layer[0](x, bias)
        x = _clamp_fp16(x + attn.astype(x.dtype))
        ff = self.layer[1](x)
        return _clamp_fp16(x.astype(ms.float32) + ff)


class T5Stack(nn.Cell):
    """The encoder stack: `block` list and `final_layer_norm` (embedding lookup is the model's `shared`)."""

    def __init__(self, c: T5Config, dtype=ms.float32):
        super().__init__()
        self.config = c
        self.block = nn.CellList([T5Block(c, i == 0, dtype=dtype) for i in range(c.num_layers)])
        self.final_layer_norm = T5LayerNorm(c.d_model, c.layer_norm_epsilon, dtype=dtype)

    def position_bias(self, n: int) -> Float[Tensor, "1 h n n"]:
        """fp32 relative position bias of the first layer's table for length n."""
        c = self.config
        ids = Tensor(np.array(_buckets(n, c.relative_attention_num_buckets, c.relative_attention_max_distance),
                              np.int32))
        table = self.block[0].layer[0].SelfAttention.relative_attention_bias.weight
        return ops.embedding(ids, table).astype(ms.float32).transpose(2, 0, 1).reshape(1, c.num_heads, n, n)

    def construct(self, x: Float[Tensor, "b n d"], attention_mask: Tensor = None) -> Float[Tensor, "b n d"]:
        b, n, _ = x.shape
        bias = self.position_bias(n)
        if attention_mask is not None:
            bias = bias + (1.0 - attention_mask.astype(ms.float32)).reshape(b, 1, 1, n) * _FP32_MIN
        for block in self.block:
            x = block(x, bias)
        return self.final_layer_norm(x)


class T5EncoderModel(nn.Cell):
    """T5 encoder: ids[b, n] (+ 0/1 attention_mask[b, n]) -> last_hidden_state[b, n, d_model] in the net dtype."""

    def __init__(self, config: T5Config = T5Config(), dtype=ms.float32):
        super().__init__()
        if config.feed_forward_proj not in _FEED_FORWARD:
            raise ValueError(f"T5EncoderModel: feed_forward_proj={config.feed_forward_proj!r} is not implemented")
        self.config = config
        self.compute_dtype = dtype
        self.shared = Embedding(config.vocab_size, config.d_model, dtype=dtype)
        self.encoder = T5Stack(config, dtype=dtype)

    def construct(self, input_ids: Int[Tensor, "b n"],
                  attention_mask: Int[Tensor, "b n"] = None) -> Float[Tensor, "b n d"]:
        if input_ids.ndim != 2:
            raise ValueError(f"T5EncoderModel: input_ids must be [batch, length], got shape {input_ids.shape}")
        x = self.shared(input_ids.astype(ms.int32))
        return self.encoder(x, attention_mask).astype(self.compute_dtype)
