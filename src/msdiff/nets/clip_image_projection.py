"""CLIPImageProjection: the bias-free square linear map that GLIGEN's text-image pipeline applies to CLIP image
embeddings to bring them into the phrase (pooled text) embedding space (diffusers'
pipelines/stable_diffusion/clip_image_project_model.py).

The parameter tree has diffusers' names (`project.weight`), so `map_weights` is the identity.
"""
from dataclasses import dataclass

import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn

from ..blocks.layers import Linear
from ._config import read_config


@dataclass(frozen=True)
class CLIPImageProjectionConfig:
    """diffusers' CLIPImageProjection config (default: CLIP ViT-L/14's 768, as anhnct/Gligen_Text_Image)."""

    hidden_size: int = 768


def config_from_diffusers(d: dict) -> CLIPImageProjectionConfig:
    """CLIPImageProjectionConfig from a diffusers config.json dict; ValueError names unknown keys."""
    return read_config(CLIPImageProjectionConfig, d, "CLIPImageProjection")


def map_weights(key: str) -> str:
    """diffusers state-dict key -> msdiff parameter name (identity: the trees match)."""
    return key


class CLIPImageProjection(nn.Cell):
    """image_project(image_embeds[..., d]) -> image_embeds @ W^T [..., d] (no bias), in the net's dtype."""

    def __init__(self, config: CLIPImageProjectionConfig = CLIPImageProjectionConfig(), dtype=ms.float32):
        super().__init__()
        self.config = config
        self.compute_dtype = dtype
        self.project = Linear(config.hidden_size, config.hidden_size, bias=False, dtype=dtype)

    def construct(self, x: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        return self.project(x.astype(self.compute_dtype))
