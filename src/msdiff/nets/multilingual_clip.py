"""MultilingualCLIP: Kandinsky 2.1's text encoder (diffusers' pipelines/kandinsky/text_encoder.py): an XLM-RoBERTa
encoder (transformers' XLMRobertaModel: post-LayerNorm BERT layers, RoBERTa positions counted from the padding id)
whose mask-averaged last hidden state goes through one linear projection.

`construct(input_ids, attention_mask) -> (projected [b, numDims], last_hidden_state [b, n, transformerDimensions])`,
as diffusers. Parameter names equal the checkpoint's (`transformer.encoder.layer.N.attention.self.query`, ...);
the pooler is loaded but not applied (diffusers does not use it either).
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

_MASK_MIN = float(-3.4028234663852886e38)
# XLMRobertaConfig keys with no effect on inference (dropouts, pooling / classifier heads, generation)
_UNUSED = frozenset("hidden_dropout_prob attention_probs_dropout_prob classifier_dropout eos_token_id "
                    "pruned_heads".split())


@dataclass(frozen=True)
class MultilingualCLIPConfig:
    """MCLIPConfig / XLMRobertaConfig fields that shape inference. The defaults are transformers' class defaults
    (a saved config.json omits a value equal to them), not the Kandinsky 2.1 checkpoint's (XLM-R large)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 1
    position_embedding_type: str = "absolute"
    transformerDimensions: int = 1024
    numDims: int = 768


def config_from_diffusers(d: dict) -> MultilingualCLIPConfig:
    """MultilingualCLIPConfig from text_encoder/config.json; ValueError names unsupported keys / values."""
    names = {f.name for f in dataclasses.fields(MultilingualCLIPConfig)}
    unknown = sorted(k for k in d if k not in names and k not in TRANSFORMERS_QUIET_KEYS and k not in _UNUSED
                     and not k.startswith("_"))
    if unknown:
        raise ValueError(f"MultilingualCLIP config: keys not implemented by msdiff: {unknown}")
    cfg = MultilingualCLIPConfig(**{k: d[k] for k in names if k in d})
    if cfg.hidden_act != "gelu":
        raise ValueError(f"MultilingualCLIP config: hidden_act={cfg.hidden_act!r} is not implemented (gelu)")
    if cfg.position_embedding_type != "absolute":
        raise ValueError(f"MultilingualCLIP config: position_embedding_type={cfg.position_embedding_type!r} is not "
                         f"implemented (absolute)")
    if cfg.transformerDimensions != cfg.hidden_size:
        raise ValueError(f"MultilingualCLIP config: transformerDimensions={cfg.transformerDimensions} must equal "
                         f"hidden_size={cfg.hidden_size}")
    if d.get("pruned_heads"):
        raise ValueError(f"MultilingualCLIP config: pruned_heads={d['pruned_heads']!r} is not implemented")
    return cfg


def map_weights(key: str) -> str:
    """Checkpoint key -> msdiff parameter name (identity: the trees match)."""
    return key


def position_ids(input_ids: Int[Tensor, "b n"], padding_idx: int) -> Int[Tensor, "b n"]:
    """RoBERTa positions: padding_idx + the running count of non-padding tokens, padding_idx at padding."""
    keep = (input_ids != padding_idx).astype(ms.int32)
    return mops.cumsum(keep, 1) * keep + padding_idx


class XLMRobertaEmbeddings(nn.Cell):
    """Word + RoBERTa position + token-type (all type 0) embeddings, then LayerNorm."""

    def __init__(self, c: MultilingualCLIPConfig, dtype=ms.float32):
        super().__init__()
        self.padding_idx = c.pad_token_id
        self.word_embeddings = Embedding(c.vocab_size, c.hidden_size, dtype=dtype)
        self.position_embeddings = Embedding(c.max_position_embeddings, c.hidden_size, dtype=dtype)
        self.token_type_embeddings = Embedding(c.type_vocab_size, c.hidden_size, dtype=dtype)
        self.LayerNorm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps, dtype=dtype)

    def construct(self, input_ids: Tensor) -> Tensor:
        x = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]
        x = x + self.position_embeddings(position_ids(input_ids, self.padding_idx))
        return self.LayerNorm(x)


class XLMRobertaSelfAttention(nn.Cell):
    """query / key / value projections and scaled dot-product attention (fp32 softmax)."""

    def __init__(self, c: MultilingualCLIPConfig, dtype=ms.float32):
        super().__init__()
        self.heads = c.num_attention_heads
        self.query = Linear(c.hidden_size, c.hidden_size, dtype=dtype)
        self.key = Linear(c.hidden_size, c.hidden_size, dtype=dtype)
        self.value = Linear(c.hidden_size, c.hidden_size, dtype=dtype)

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        b, n, d = x.shape
        shape = (b, n, self.heads, d // self.heads)
        q, k, v = (f(x).reshape(shape).swapaxes(1, 2) for f in (self.query, self.key, self.value))
        return ops.attention(q, k, v, mask=mask).swapaxes(1, 2).reshape(b, n, d)


class DenseLayerNorm(nn.Cell):
    """LayerNorm(dense(h) + residual): BERT's SelfOutput / Output."""

    def __init__(self, dim_in: int, dim: int, eps: float, dtype=ms.float32):
        super().__init__()
        self.dense = Linear(dim_in, dim, dtype=dtype)
        self.LayerNorm = LayerNorm(dim, eps=eps, dtype=dtype)

    def construct(self, h: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(h) + residual)


class XLMRobertaAttention(nn.Cell):
    def __init__(self, c: MultilingualCLIPConfig, dtype=ms.float32):
        super().__init__()
        self.self = XLMRobertaSelfAttention(c, dtype)  # the checkpoint's name: attention.self.query
        self.output = DenseLayerNorm(c.hidden_size, c.hidden_size, c.layer_norm_eps, dtype)

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.output(self.self(x, mask), x)


class XLMRobertaIntermediate(nn.Cell):
    def __init__(self, c: MultilingualCLIPConfig, dtype=ms.float32):
        super().__init__()
        self.dense = Linear(c.hidden_size, c.intermediate_size, dtype=dtype)

    def construct(self, x: Tensor) -> Tensor:
        return ops.gelu(self.dense(x))


class XLMRobertaLayer(nn.Cell):
    """Post-norm BERT layer: LN(x + attn(x)), then LN(h + fc2(gelu(fc1(h))))."""

    def __init__(self, c: MultilingualCLIPConfig, dtype=ms.float32):
        super().__init__()
        self.attention = XLMRobertaAttention(c, dtype)
        self.intermediate = XLMRobertaIntermediate(c, dtype)
        self.output = DenseLayerNorm(c.intermediate_size, c.hidden_size, c.layer_norm_eps, dtype)

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.attention(x, mask)
        return self.output(self.intermediate(h), h)


class XLMRobertaEncoder(nn.Cell):
    def __init__(self, c: MultilingualCLIPConfig, dtype=ms.float32):
        super().__init__()
        self.layer = nn.CellList([XLMRobertaLayer(c, dtype) for _ in range(c.num_hidden_layers)])

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        for layer in self.layer:
            x = layer(x, mask)
        return x


class XLMRobertaPooler(nn.Cell):
    """Loaded for a one-to-one checkpoint, not applied (MultilingualCLIP averages the hidden states instead)."""

    def __init__(self, c: MultilingualCLIPConfig, dtype=ms.float32):
        super().__init__()
        self.dense = Linear(c.hidden_size, c.hidden_size, dtype=dtype)


class XLMRobertaModel(nn.Cell):
    """Embeddings and the encoder: last hidden state [b, n, d] (padding keys masked with fp32 min)."""

    def __init__(self, c: MultilingualCLIPConfig, dtype=ms.float32):
        super().__init__()
        self.embeddings = XLMRobertaEmbeddings(c, dtype)
        self.encoder = XLMRobertaEncoder(c, dtype)
        self.pooler = XLMRobertaPooler(c, dtype)

    def construct(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        b, n = input_ids.shape
        mask = (1.0 - attention_mask.astype(ms.float32)).reshape(b, 1, 1, n) * _MASK_MIN
        return self.encoder(self.embeddings(input_ids), mask)


class MultilingualCLIP(nn.Cell):
    """input_ids[b, n], attention_mask[b, n] -> (LinearTransformation(mask-mean of the last hidden state) [b, e],
    last_hidden_state [b, n, d])."""

    def __init__(self, config: MultilingualCLIPConfig = MultilingualCLIPConfig(), dtype=ms.float32):
        super().__init__()
        self.config = config
        self.compute_dtype = dtype
        self.transformer = XLMRobertaModel(config, dtype)
        self.LinearTransformation = Linear(config.transformerDimensions, config.numDims, dtype=dtype)

    def construct(self, input_ids: Int[Tensor, "b n"], attention_mask: Int[Tensor, "b n"]
                  ) -> "tuple[Float[Tensor, 'b e'], Float[Tensor, 'b n d']]":
        embs = self.transformer(input_ids, attention_mask)
        m = attention_mask.astype(embs.dtype)
        pooled = (embs * m[:, :, None]).sum(axis=1) / m.sum(axis=1)[:, None]
        return self.LinearTransformation(pooled), embs


def mclip_embeds(net: MultilingualCLIP, input_ids, attention_mask) -> tuple:
    """(projected [b, e], last hidden state [b, n, d]) in float32, from numpy / Tensor ids and mask."""
    ids = input_ids if isinstance(input_ids, Tensor) else Tensor(input_ids, ms.int32)
    mask = attention_mask if isinstance(attention_mask, Tensor) else Tensor(attention_mask, ms.int32)
    proj, last = net(ids.astype(ms.int32), mask.astype(ms.int32))
    return proj.astype(ms.float32), last.astype(ms.float32)

