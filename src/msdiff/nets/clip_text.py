"""CLIP text encoders (transformers 4.57 `CLIPTextModel` / `CLIPTextModelWithProjection`).

Both nets are called as `net(input_ids, attention_mask=None)` with integer ids[b, n] (n <= 77)
and an optional 0/1 mask[b, n]; they return a tuple of Tensors

    (last_hidden_state[b, n, d],          # after final_layer_norm
     pooled[b, d] | text_embeds[b, p],    # eos-token state; projected for ...WithProjection
     hidden_states)                       # tuple of num_hidden_layers + 1 Tensors[b, n, d]:
                                          # embeddings output, then each encoder layer's output
                                          # (no final_layer_norm on any of them)

so `hidden_states[-1]` is `last_hidden_state` before the final layer norm. As in diffusers'
`encode_prompt`: SD 1.x/2.x use `last_hidden_state`, or with `clip_skip=k`
`net.final_layer_norm(hidden_states[-(k + 1)])`; SD-XL concatenates both encoders'
`hidden_states[-2]` (with `clip_skip=k`: `hidden_states[-(k + 2)]`, never normed) and takes its
pooled prompt embedding from the second encoder's `text_embeds` (element 1 of our tuple).
The int ids may be int32 or int64; `attention_mask` is transformers' 0/1 padding mask (SD
pipelines pass none).
"""
import dataclasses
import re
from dataclasses import dataclass

import mindspore as ms
import numpy as np
from jaxtyping import Float, Int
from mindspore import Tensor, nn

from ..blocks.clip_encoder import ACTIVATIONS as _ACTIVATIONS, encoder_from_config
from ..blocks.layers import Embedding, LayerNorm, Linear
from ._config import TRANSFORMERS_QUIET_KEYS

# Most negative fp32, the additive mask value transformers uses (two of them sum to -inf).
_MASK_MIN = float(np.finfo(np.float32).min)

# Checkpoint keys that are buffers, not parameters: `map_weights` returns None for them.
IGNORED_KEYS = (r"text_model\.embeddings\.position_ids",)


@dataclass(frozen=True)
class CLIPTextConfig:
    """openai/clip-vit-large-patch14's text config (the SD 1.x text encoder)."""

    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    projection_dim: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    eos_token_id: int = 2  # 2 = legacy pooling at argmax(input_ids); else the first eos position


# transformers' CLIPTextConfig.__init__ defaults: what a config.json without the key means.
_TRANSFORMERS_DEFAULTS = dict(
    vocab_size=49408, hidden_size=512, intermediate_size=2048, projection_dim=512,
    num_hidden_layers=12, num_attention_heads=8, max_position_embeddings=77,
    hidden_act="quick_gelu", layer_norm_eps=1e-5, eos_token_id=49407,
)

def config_from_diffusers(d: dict) -> CLIPTextConfig:
    """CLIPTextConfig from a transformers CLIPTextConfig config.json (missing keys: transformers' defaults)."""
    if "text_config" in d or d.get("model_type", "clip_text_model") != "clip_text_model":
        raise ValueError(f"CLIP text config: model_type {d.get('model_type')!r} is not a CLIPTextConfig "
                         "(for a full CLIPConfig pass its 'text_config')")
    fields = {f.name for f in dataclasses.fields(CLIPTextConfig)}
    unknown = sorted(k for k in d if k not in fields and k not in TRANSFORMERS_QUIET_KEYS and not k.startswith("_"))
    if unknown:
        raise ValueError(f"CLIP text config: keys not implemented by msdiff: {unknown}")
    if d.get("pruned_heads"):
        raise ValueError(f"CLIP text config: pruned_heads={d['pruned_heads']!r} is not implemented")
    values = {k: d.get(k, _TRANSFORMERS_DEFAULTS[k]) for k in fields}
    if values["hidden_act"] not in _ACTIVATIONS:
        raise ValueError(f"CLIP text config: hidden_act={values['hidden_act']!r} is not implemented "
                         f"(supported: {_ACTIVATIONS})")
    if values["hidden_size"] % values["num_attention_heads"]:
        raise ValueError(f"CLIP text config: hidden_size {values['hidden_size']} is not divisible by "
                         f"num_attention_heads {values['num_attention_heads']}")
    if isinstance(values["eos_token_id"], (list, tuple)):
        raise ValueError(f"CLIP text config: eos_token_id={values['eos_token_id']!r} (a list) is not implemented")
    return CLIPTextConfig(**values)


def map_weights(key: str):
    """transformers state-dict key -> msdiff parameter name, or None for a key to ignore (IGNORED_KEYS).

    Identity for transformers 4.x checkpoints; keys saved without the `text_model.` prefix
    (transformers 5) get it back.
    """
    if key.startswith(("embeddings.", "encoder.", "final_layer_norm.")):
        key = "text_model." + key
    if any(re.fullmatch(p, key) for p in IGNORED_KEYS):
        return None
    return key


class CLIPTextEmbeddings(nn.Cell):
    """Token embedding plus learned absolute position embedding."""

    def __init__(self, c: CLIPTextConfig, dtype=ms.float32):
        super().__init__()
        self.token_embedding = Embedding(c.vocab_size, c.hidden_size, dtype=dtype)
        self.position_embedding = Embedding(c.max_position_embeddings, c.hidden_size, dtype=dtype)

    def construct(self, input_ids: Tensor) -> Tensor:
        n = input_ids.shape[-1]
        limit = self.position_embedding.weight.shape[0]
        if n > limit:
            raise ValueError(f"CLIP text: sequence length {n} exceeds max_position_embeddings {limit}")
        return self.token_embedding(input_ids) + self.position_embedding.weight[:n]


def _additive_mask(n: int, attention_mask: Tensor = None) -> Tensor:
    """fp32 [1|b, 1, n, n] mask: causal (key after query) and padding (mask 0) entries are fp32 min."""
    idx = ms.ops.arange(0, n, dtype=ms.int32)
    mask = (idx.reshape(1, n) > idx.reshape(n, 1)).astype(ms.float32).reshape(1, 1, n, n) * _MASK_MIN
    if attention_mask is not None:
        pad = (1.0 - attention_mask.astype(ms.float32)).reshape(-1, 1, 1, n) * _MASK_MIN
        mask = mask + pad
    return mask


class CLIPTextTransformer(nn.Cell):
    """Embeddings, causal encoder, final layer norm and eos pooling (transformers' `text_model`)."""

    def __init__(self, c: CLIPTextConfig, dtype=ms.float32):
        super().__init__()
        self.eos_token_id = c.eos_token_id
        self.embeddings = CLIPTextEmbeddings(c, dtype=dtype)
        self.encoder = encoder_from_config(c, dtype=dtype)
        self.final_layer_norm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps, dtype=dtype)

    def construct(self, input_ids: Tensor, attention_mask: Tensor = None):
        ids = input_ids.astype(ms.int32)
        b, n = ids.shape
        states = self.encoder(self.embeddings(ids), _additive_mask(n, attention_mask))
        last = self.final_layer_norm(states[-1])
        if self.eos_token_id == 2:
            pos = ids.argmax(-1)
        else:
            pos = (ids == self.eos_token_id).astype(ms.int32).argmax(-1)
        index = pos.astype(ms.int32).reshape(b, 1, 1).broadcast_to((b, 1, last.shape[-1]))
        pooled = ms.ops.gather_elements(last, 1, index).reshape(b, last.shape[-1])
        return last, pooled, states


def append_token_embeddings(net, rows: Float[np.ndarray, "k d"]) -> int:
    """Append rows to a CLIP text encoder's token-embedding table (textual inversion); returns the first new id."""
    table = net.text_model.embeddings.token_embedding
    old = table.weight
    if rows.ndim != 2 or rows.shape[1] != old.shape[1]:
        raise ValueError(f"CLIP text: embedding rows must be [k, {old.shape[1]}], got {rows.shape}")
    first = old.shape[0]
    grown = np.concatenate([old.asnumpy(), rows.astype(old.asnumpy().dtype)], 0)
    table.weight = ms.Parameter(Tensor(grown), name=old.name)
    net.config = dataclasses.replace(net.config, vocab_size=grown.shape[0])
    return first


class CLIPTextModel(nn.Cell):
    """CLIP text encoder; returns (last_hidden_state, pooled_output, hidden_states)."""

    def __init__(self, config: CLIPTextConfig = CLIPTextConfig(), dtype=ms.float32):
        super().__init__()
        self.config = config
        self.text_model = CLIPTextTransformer(config, dtype=dtype)

    def final_layer_norm(self, h: Float[Tensor, "b n d"]) -> Float[Tensor, "b n d"]:
        """The encoder's final layer norm, for clip_skip: final_layer_norm(hidden_states[-(k + 1)])."""
        return self.text_model.final_layer_norm(h)

    def construct(self, input_ids: Int[Tensor, "b n"], attention_mask: Int[Tensor, "b n"] = None):
        return self.text_model(input_ids, attention_mask)


class CLIPTextModelWithProjection(nn.Cell):
    """CLIP text encoder with text_projection; returns (last_hidden_state, text_embeds, hidden_states)."""

    def __init__(self, config: CLIPTextConfig = CLIPTextConfig(), dtype=ms.float32):
        super().__init__()
        self.config = config
        self.text_model = CLIPTextTransformer(config, dtype=dtype)
        self.text_projection = Linear(config.hidden_size, config.projection_dim, bias=False, dtype=dtype)

    def final_layer_norm(self, h: Float[Tensor, "b n d"]) -> Float[Tensor, "b n d"]:
        """The encoder's final layer norm, for clip_skip: final_layer_norm(hidden_states[-(k + 1)])."""
        return self.text_model.final_layer_norm(h)

    def construct(self, input_ids: Int[Tensor, "b n"], attention_mask: Int[Tensor, "b n"] = None):
        last, pooled, states = self.text_model(input_ids, attention_mask)
        return last, self.text_projection(pooled), states
