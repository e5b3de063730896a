"""CLIP image encoders (transformers 4.57 `CLIPVisionModel` / `CLIPVisionModelWithProjection`).

Both nets are called as `net(pixel_values)` with pixel_values[b, 3, image_size, image_size]
(preprocessed as `msdiff.recipes.clip_image.preprocess`, transformers' `CLIPImageProcessor`) and
return a tuple of Tensors, ordered like msdiff's CLIP text encoders:

    (last_hidden_state[b, 1 + p, d],      # encoder output (no post_layernorm), class token first
     pooled[b, d] | image_embeds[b, e],   # post_layernorm(class token); projected for ...WithProjection
     hidden_states)                       # tuple of num_hidden_layers + 1 Tensors[b, 1 + p, d]:
                                          # the pre-layer-normed embeddings, then each layer's output

so `hidden_states[-1]` is `last_hidden_state` and `hidden_states[-2]` is the penultimate layer's
output that IP-Adapter Plus reads. transformers' `...WithProjection` orders its output
`(image_embeds, last_hidden_state, ...)`; here the projection is element 1, as for the text nets.
Position embeddings are not interpolated: the input must be image_size x image_size.
"""
import dataclasses
import re
from dataclasses import dataclass

import mindspore as ms
from jaxtyping import Float
from mindspore import Parameter, Tensor, nn
from mindspore.common.initializer import Normal, initializer

from ..blocks.clip_encoder import ACTIVATIONS, encoder_from_config
from ..blocks.layers import Conv2d, Embedding, LayerNorm, Linear
from ._config import TRANSFORMERS_QUIET_KEYS

# Checkpoint keys that are buffers, not parameters: `map_weights` returns None for them.
IGNORED_KEYS = (r"vision_model\.embeddings\.position_ids",)


@dataclass(frozen=True)
class CLIPVisionConfig:
    """openai/clip-vit-large-patch14's vision config (the image encoder of lambdalabs/sd-image-variations)."""

    hidden_size: int = 1024
    intermediate_size: int = 4096
    projection_dim: int = 768
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 14
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5


# transformers' CLIPVisionConfig.__init__ defaults: what a config.json without the key means.
_TRANSFORMERS_DEFAULTS = dict(
    hidden_size=768, intermediate_size=3072, projection_dim=512, num_hidden_layers=12, num_attention_heads=12,
    num_channels=3, image_size=224, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5,
)


def config_from_diffusers(d: dict) -> CLIPVisionConfig:
    """CLIPVisionConfig from a transformers CLIPVisionConfig config.json (missing keys: transformers' defaults)."""
    if "vision_config" in d or d.get("model_type", "clip_vision_model") != "clip_vision_model":
        raise ValueError(f"CLIP vision config: model_type {d.get('model_type')!r} is not a CLIPVisionConfig "
                         "(for a full CLIPConfig pass its 'vision_config')")
    fields = {f.name for f in dataclasses.fields(CLIPVisionConfig)}
    unknown = sorted(k for k in d if k not in fields and k not in TRANSFORMERS_QUIET_KEYS and not k.startswith("_"))
    if unknown:
        raise ValueError(f"CLIP vision config: keys not implemented by msdiff: {unknown}")
    if d.get("pruned_heads"):
        raise ValueError(f"CLIP vision config: pruned_heads={d['pruned_heads']!r} is not implemented")
    values = {k: d.get(k, _TRANSFORMERS_DEFAULTS[k]) for k in fields}
    if values["hidden_act"] not in ACTIVATIONS:
        raise ValueError(f"CLIP vision config: hidden_act={values['hidden_act']!r} is not implemented "
                         f"(supported: {ACTIVATIONS})")
    if values["hidden_size"] % values["num_attention_heads"]:
        raise ValueError(f"CLIP vision config: hidden_size {values['hidden_size']} is not divisible by "
                         f"num_attention_heads {values['num_attention_heads']}")
    if values["image_size"] % values["patch_size"]:
        raise ValueError(f"CLIP vision config: image_size {values['image_size']} is not a multiple of "
                         f"patch_size {values['patch_size']}")
    return CLIPVisionConfig(**values)


def map_weights(key: str):
    """transformers state-dict key -> msdiff parameter name, or None for a key to ignore (IGNORED_KEYS).

    Identity for transformers 4.x checkpoints; keys saved without the `vision_model.` prefix get it back.
    """
    if key.startswith(("embeddings.", "encoder.", "pre_layrnorm.", "post_layernorm.")):
        key = "vision_model." + key
    if any(re.fullmatch(p, key) for p in IGNORED_KEYS):
        return None
    return key


class CLIPVisionEmbeddings(nn.Cell):
    """Class token plus non-overlapping patch embedding, plus learned absolute position embedding."""

    def __init__(self, c: CLIPVisionConfig, dtype=ms.float32):
        super().__init__()
        self.image_size, self.num_channels = c.image_size, c.num_channels
        self.class_embedding = Parameter(initializer(Normal(1.0), (c.hidden_size,), dtype), name="class_embedding")
        self.patch_embedding = Conv2d(c.num_channels, c.hidden_size, c.patch_size, stride=c.patch_size, bias=False,
                                      dtype=dtype)
        num_positions = (c.image_size // c.patch_size) ** 2 + 1
        self.position_embedding = Embedding(num_positions, c.hidden_size, dtype=dtype)

    def construct(self, pixel_values: Tensor) -> Tensor:
        b, ch, h, w = pixel_values.shape
        if ch != self.num_channels or h != self.image_size or w != self.image_size:
            raise ValueError(f"CLIP vision: pixel_values must be [b, {self.num_channels}, {self.image_size}, "
                             f"{self.image_size}], got {pixel_values.shape}")
        x = self.patch_embedding(pixel_values.astype(self.class_embedding.dtype))
        x = x.reshape(b, x.shape[1], -1).swapaxes(1, 2)
        cls = self.class_embedding.reshape(1, 1, -1).broadcast_to((b, 1, x.shape[-1]))
        return ms.ops.cat((cls, x), axis=1) + self.position_embedding.weight


class CLIPVisionTransformer(nn.Cell):
    """Embeddings, pre layer norm, encoder and the class token's post layer norm (transformers' `vision_model`)."""

    def __init__(self, c: CLIPVisionConfig, dtype=ms.float32):
        super().__init__()
        self.embeddings = CLIPVisionEmbeddings(c, dtype=dtype)
        self.pre_layrnorm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps, dtype=dtype)
        self.encoder = encoder_from_config(c, dtype=dtype)
        self.post_layernorm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps, dtype=dtype)

    def construct(self, pixel_values: Tensor):
        states = self.encoder(self.pre_layrnorm(self.embeddings(pixel_values)))
        last = states[-1]
        return last, self.post_layernorm(last[:, 0]), states


class CLIPVisionModel(nn.Cell):
    """CLIP image encoder; returns (last_hidden_state, pooled_output, hidden_states)."""

    def __init__(self, config: CLIPVisionConfig = CLIPVisionConfig(), dtype=ms.float32):
        super().__init__()
        self.config = config
        self.vision_model = CLIPVisionTransformer(config, dtype=dtype)

    def construct(self, pixel_values: Float[Tensor, "b c h w"]):
        return self.vision_model(pixel_values)


class CLIPVisionModelWithProjection(nn.Cell):
    """CLIP image encoder with visual_projection; returns (last_hidden_state, image_embeds, hidden_states)."""

    def __init__(self, config: CLIPVisionConfig = CLIPVisionConfig(), dtype=ms.float32):
        super().__init__()
        self.config = config
        self.vision_model = CLIPVisionTransformer(config, dtype=dtype)
        self.visual_projection = Linear(config.hidden_size, config.projection_dim, bias=False, dtype=dtype)

    def construct(self, pixel_values: Float[Tensor, "b c h w"]):
        last, pooled, states = self.vision_model(pixel_values)
        return last, self.visual_projection(pooled), states
