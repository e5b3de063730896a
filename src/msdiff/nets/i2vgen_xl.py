"""I2VGenXLUNet: I2VGen-XL's image + text conditioned video UNet (UNet3DConditionModel's body, image conditioning).

The first frame's image latents become extra context tokens (image_latents_context_embedding, adaptive-pooled
to 32 x 32 then strided down), every frame's image latents pass a small temporal encoder and are concatenated
to the noisy sample, the CLIP image embedding becomes in_channels more context tokens, and the fps is embedded
like the timestep. Attention softmax is fp32 (ops.attention); on CPU q.k is fp32 too, but on GPU an fp16 net's
q.k product leaves the matmul in fp16 before the fp32 scale (not the seed's "upcast bmm": an ops matter).
The parameter tree has diffusers' names.
"""
from dataclasses import dataclass, fields
from typing import Optional, Tuple, Union

import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .. import ops
from ..blocks.attention import Attention, FeedForward
from ..blocks.embeddings import batch_timesteps
from ..blocks.layers import Conv2d, LayerNorm, Linear
from ..blocks.temporal import repeat_frames, to_frames, to_video
from ._config import read_config
from .unet_3d_condition import UNet3DConditionConfig, UNet3DConditionModel
from .unet_3d_condition import config_from_diffusers as unet_3d_config


@dataclass(frozen=True)
class I2VGenXLConfig:
    """The architecture-defining fields of diffusers' I2VGenXLUNet config (its defaults)."""

    sample_size: Optional[Union[int, Tuple]] = None
    in_channels: int = 4
    out_channels: int = 4
    down_block_types: Tuple[str, ...] = ("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",)
    up_block_types: Tuple[str, ...] = ("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3
    block_out_channels: Tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    cross_attention_dim: int = 1024
    attention_head_dim: Union[int, Tuple[int, ...]] = 64


# diffusers ignores num_attention_heads (it sets heads from attention_head_dim): any value builds the same net.
_IGNORED = {"num_attention_heads"}


def _unet_3d_config(c: I2VGenXLConfig) -> UNet3DConditionConfig:
    """The UNet3DConditionModel whose body I2VGenXLUNet shares: conv_in over [sample; image latents], resnet eps
    1e-5, downsample padding 1, no timestep cond projection."""
    return UNet3DConditionConfig(
        in_channels=2 * c.in_channels, out_channels=c.out_channels, down_block_types=c.down_block_types,
        up_block_types=c.up_block_types, block_out_channels=c.block_out_channels, layers_per_block=c.layers_per_block,
        norm_num_groups=c.norm_num_groups, norm_eps=1e-5, cross_attention_dim=c.cross_attention_dim,
        attention_head_dim=c.attention_head_dim)


def config_from_diffusers(d: dict) -> I2VGenXLConfig:
    """I2VGenXLConfig from a diffusers config.json dict; ValueError names unsupported keys/values."""
    cfg = read_config(I2VGenXLConfig, d, "I2VGenXLUNet", ignored=_IGNORED)
    base = _unet_3d_config(cfg)
    unet_3d_config({f.name: getattr(base, f.name) for f in fields(base)})
    return cfg


def map_weights(key: str) -> str:
    """diffusers state-dict key -> msdiff parameter name (identity: the trees match)."""
    return key


def _sequential(*cells) -> nn.CellList:
    """diffusers' nn.Sequential indices: parameter-free SiLU / pooling slots are Identity placeholders."""
    return nn.CellList([nn.Identity() if c is None else c for c in cells])


class I2VGenXLTransformerTemporalEncoder(nn.Cell):
    """Self-attention over frames (pre-LayerNorm) then a GELU feed-forward without a norm, both residual."""

    def __init__(self, dim: int, num_attention_heads: int, attention_head_dim: int, ff_inner_dim: int,
                 dtype=ms.float32):
        super().__init__()
        self.norm1 = LayerNorm(dim, dtype=dtype)
        self.attn1 = Attention(dim, None, num_attention_heads, attention_head_dim, dtype=dtype)
        self.ff = FeedForward(dim, activation_fn="gelu", inner_dim=ff_inner_dim, dtype=dtype)

    def construct(self, x: Float[Tensor, "n f c"]) -> Float[Tensor, "n f c"]:
        x = self.attn1(self.norm1(x)) + x
        return self.ff(x) + x


class I2VGenXLUNet(UNet3DConditionModel):
    """unet(sample [b, c, f, h, w], timestep, fps [b], image_latents [b, 4, f, h, w], image_embeddings [b, d],
    encoder_hidden_states [b, n, d]) -> eps [b, out, f, h, w]."""

    def __init__(self, config: I2VGenXLConfig, dtype=ms.float32):
        super().__init__(_unet_3d_config(config), dtype)
        c = self.config = config
        ic, cross, boc0 = c.in_channels, c.cross_attention_dim, c.block_out_channels[0]
        temb = boc0 * 4
        self.image_latents_proj_in = _sequential(
            Conv2d(4, ic * 4, 3, padding=1, dtype=dtype), None, Conv2d(ic * 4, ic * 4, 3, padding=1, dtype=dtype),
            None, Conv2d(ic * 4, ic, 3, padding=1, dtype=dtype))
        self.image_latents_temporal_encoder = I2VGenXLTransformerTemporalEncoder(ic, 2, ic, ic * 4, dtype)
        self.image_latents_context_embedding = _sequential(
            Conv2d(4, ic * 8, 3, padding=1, dtype=dtype), None, None,
            Conv2d(ic * 8, ic * 16, 3, stride=2, padding=1, dtype=dtype), None,
            Conv2d(ic * 16, cross, 3, stride=2, padding=1, dtype=dtype))
        self.context_embedding = _sequential(Linear(cross, temb, dtype=dtype), None,
                                             Linear(temb, cross * ic, dtype=dtype))
        self.fps_embedding = _sequential(Linear(boc0, temb, dtype=dtype), None, Linear(temb, temb, dtype=dtype))

    def _image_context(self, first: Tensor) -> Tensor:
        """First-frame latents [b, 4, h, w] -> context tokens [b, (32 / 4)^2, d]."""
        seq = self.image_latents_context_embedding
        x = ops.silu(seq[0](first))
        x = ops.silu(seq[3](ops.adaptive_avg_pool2d(x, 32)))
        x = seq[5](x)
        return x.transpose(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])

    def _image_latents(self, image_latents: Tensor) -> Tensor:
        """Every frame's latents [b, 4, f, h, w] -> projected, temporally encoded [b, c, f, h, w]."""
        b, _, f, h, w = image_latents.shape
        seq = self.image_latents_proj_in
        x = to_frames(image_latents)
        x = seq[4](ops.silu(seq[2](ops.silu(seq[0](x)))))
        c = x.shape[1]
        tokens = x.reshape(b, f, c, h, w).transpose(0, 3, 4, 1, 2).reshape(b * h * w, f, c)
        tokens = self.image_latents_temporal_encoder(tokens)
        return tokens.reshape(b, h, w, f, c).transpose(0, 4, 3, 1, 2)

    def construct(self, sample: Float[Tensor, "b c f h w"], timestep, fps: Float[Tensor, "b"],
                  image_latents: Float[Tensor, "b 4 f h w"], image_embeddings: Float[Tensor, "b d"],
                  encoder_hidden_states: Float[Tensor, "b n d"]) -> Float[Tensor, "b o f h w"]:
        dtype = self.compute_dtype
        sample, image_latents = sample.astype(dtype), image_latents.astype(dtype)
        b, _, f, h, w = sample.shape
        factor = 2 ** self.num_upsamplers
        forward_upsample_size = h % factor != 0 or w % factor != 0
        fe = self.fps_embedding
        emb = self.time_embedding(self.time_proj(batch_timesteps(timestep, b)).astype(dtype))
        emb = emb + fe[2](ops.silu(fe[0](self.time_proj(batch_timesteps(fps, b)).astype(dtype))))
        emb = repeat_frames(emb, f)

        ce = self.context_embedding
        image_tokens = ce[2](ops.silu(ce[0](image_embeddings.astype(dtype)))).reshape(
            b, self.config.in_channels, self.config.cross_attention_dim)
        context = mops.cat((encoder_hidden_states.astype(dtype), self._image_context(image_latents[:, :, 0]),
                            image_tokens), axis=1)
        context = repeat_frames(context, f)

        x = mops.cat((sample, self._image_latents(image_latents)), axis=1)
        x = self.transformer_in(self.conv_in(to_frames(x)), f)
        return to_video(self.unet_body(x, emb, context, f, forward_upsample_size), f)
