"""UNet2DModel: diffusers' pixel-space (optionally class-conditional) noise-prediction UNet (DDPM, NCSN++ style).

The parameter tree has diffusers' names; `map_weights` only renames pre-0.14 attention keys.
"""
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import mindspore as ms
from jaxtyping import Float, Int
from mindspore import Tensor, nn

from .. import ops
from ..blocks.embeddings import TimestepEmbedding, Timesteps, batch_timesteps
from ..blocks.layers import Conv2d, Embedding, GroupNorm
from ..blocks.skip_blocks import AttnSkipDownBlock2D, AttnSkipUpBlock2D, SkipDownBlock2D, SkipUpBlock2D
from ..blocks.unet_2d_blocks import DownBlock2D, UpBlock2D
from ..blocks.unet_2d_model_blocks import AttnDownBlock2D, AttnUpBlock2D, GaussianFourierProjection
from ..blocks.vae_blocks import UNetMidBlock2D
from ._config import read_config
from ._keys import modern_attention_key


@dataclass(frozen=True)
class UNet2DConfig:
    """The architecture-defining fields of diffusers' UNet2DModel config (diffusers' defaults)."""

    sample_size: Optional[Union[int, Tuple[int, int]]] = None
    in_channels: int = 3
    out_channels: int = 3
    center_input_sample: bool = False
    time_embedding_type: str = "positional"
    time_embedding_dim: Optional[int] = None
    freq_shift: float = 0
    flip_sin_to_cos: bool = True
    down_block_types: Tuple[str, ...] = ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D")
    mid_block_type: Optional[str] = "UNetMidBlock2D"
    up_block_types: Tuple[str, ...] = ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")
    block_out_channels: Tuple[int, ...] = (224, 448, 672, 896)
    layers_per_block: int = 2
    mid_block_scale_factor: float = 1.0
    downsample_padding: int = 1
    attention_head_dim: Optional[int] = 8
    norm_num_groups: Optional[int] = 32
    norm_eps: float = 1e-5
    add_attention: bool = True
    num_class_embeds: Optional[int] = None
    class_embed_type: Optional[str] = None
    resnet_time_scale_shift: str = "default"
    attn_norm_num_groups: Optional[int] = None
    downsample_type: str = "conv"
    upsample_type: str = "conv"
    num_train_timesteps: Optional[int] = None


# key -> the values msdiff implements; any other value changes the architecture and is refused.
_FIXED = {
    "act_fn": ("silu", "swish"), "class_embed_type": (None, "timestep", "identity"),
    "downsample_type": ("conv", "resnet"), "upsample_type": ("conv", "resnet"),
    "resnet_time_scale_shift": ("default", "scale_shift"),
    "time_embedding_type": ("positional", "fourier", "learned"), "mid_block_type": ("UNetMidBlock2D", None),
}
# keys without effect on inference for the configurations accepted above.
_IGNORED = {"dropout"}
# block type -> (block class, how it resamples: "conv" / "resnet" fixed, "config" from down/upsample_type,
# None: the block picks its own resampler (the FIR skip blocks)).
_DOWN = {"DownBlock2D": (DownBlock2D, "conv"), "ResnetDownsampleBlock2D": (DownBlock2D, "resnet"),
         "AttnDownBlock2D": (AttnDownBlock2D, "config"), "SkipDownBlock2D": (SkipDownBlock2D, None),
         "AttnSkipDownBlock2D": (AttnSkipDownBlock2D, None)}
_UP = {"UpBlock2D": (UpBlock2D, "conv"), "ResnetUpsampleBlock2D": (UpBlock2D, "resnet"),
       "AttnUpBlock2D": (AttnUpBlock2D, "config"), "SkipUpBlock2D": (SkipUpBlock2D, None),
       "AttnSkipUpBlock2D": (AttnSkipUpBlock2D, None)}
# NCSN++ skip blocks: they carry a 3-channel skip image and pick their own group counts (min(channels // 4, 32)).
_SKIP = {"SkipDownBlock2D", "AttnSkipDownBlock2D", "SkipUpBlock2D", "AttnSkipUpBlock2D"}


def config_from_diffusers(d: dict) -> UNet2DConfig:
    """UNet2DConfig from a diffusers config.json dict; ValueError names unsupported keys/values."""
    cfg = read_config(UNet2DConfig, d, "UNet2DModel", _FIXED, _IGNORED)
    for t in cfg.down_block_types:
        if t not in _DOWN:
            raise ValueError(f"UNet2DModel: down block type {t!r} is not supported by msdiff "
                             f"(supported: {sorted(_DOWN)})")
    for t in cfg.up_block_types:
        if t not in _UP:
            raise ValueError(f"UNet2DModel: up block type {t!r} is not supported by msdiff "
                             f"(supported: {sorted(_UP)})")
    if not len(cfg.down_block_types) == len(cfg.up_block_types) == len(cfg.block_out_channels):
        raise ValueError("UNet2DModel: down_block_types, up_block_types and block_out_channels must have "
                         "the same length")
    if cfg.norm_num_groups is None and not set(cfg.down_block_types + cfg.up_block_types) <= _SKIP:
        raise ValueError("UNet2DModel: norm_num_groups=None works only when every block is a skip block "
                         "(they choose their own group counts)")
    if set(cfg.down_block_types + cfg.up_block_types) & _SKIP and (cfg.in_channels != 3 or cfg.out_channels != 3):
        raise ValueError("UNet2DModel: skip blocks need in_channels = out_channels = 3 (diffusers' skip_conv)")
    if cfg.time_embedding_type == "learned" and cfg.num_train_timesteps is None:
        raise ValueError("UNet2DModel: time_embedding_type 'learned' needs num_train_timesteps")
    return cfg


def map_weights(key: str) -> str:
    """diffusers state-dict key -> msdiff parameter name: the trees match; pre-0.14 attention names
    (query/key/value/proj_attn) are renamed as diffusers does on load."""
    return modern_attention_key(key)


class UNet2DModel(nn.Cell):
    """Noise-prediction UNet in pixel space: unet(sample, timestep, class_labels=None) -> Tensor like sample."""

    def __init__(self, config: UNet2DConfig, dtype=ms.float32):
        super().__init__()
        c = self.config = config
        self.compute_dtype = dtype
        n = len(c.down_block_types)
        boc = c.block_out_channels
        groups, eps = c.norm_num_groups, c.norm_eps
        mid_groups = groups or min(boc[-1] // 4, 32)
        out_groups = groups or min(boc[0] // 4, 32)
        temb = c.time_embedding_dim or boc[0] * 4

        self.conv_in = Conv2d(c.in_channels, boc[0], 3, padding=1, dtype=dtype)
        if c.time_embedding_type == "fourier":
            self.time_proj = GaussianFourierProjection(boc[0], scale=16)
            time_in = 2 * boc[0]
        elif c.time_embedding_type == "learned":
            self.time_proj = Embedding(c.num_train_timesteps, boc[0], dtype=dtype)
            time_in = boc[0]
        else:
            self.time_proj = Timesteps(boc[0], c.flip_sin_to_cos, c.freq_shift)
            time_in = boc[0]
        self.time_embedding = TimestepEmbedding(time_in, temb, dtype=dtype)
        self.class_embedding = None
        if c.class_embed_type == "timestep":
            self.class_embedding = TimestepEmbedding(time_in, temb, dtype=dtype)
        elif c.class_embed_type is None and c.num_class_embeds:
            self.class_embedding = Embedding(c.num_class_embeds, temb, dtype=dtype)

        down = []
        out_ch = boc[0]
        for i, kind in enumerate(c.down_block_types):
            in_ch, out_ch = out_ch, boc[i]
            common = self._block_args(kind, out_ch, num_layers=c.layers_per_block, add_downsample=i < n - 1)
            if kind not in _SKIP:
                common["downsample_padding"] = c.downsample_padding
            cls, resample = _DOWN[kind]
            if resample is not None:
                common["downsample_type"] = c.downsample_type if resample == "config" else resample
            down.append(cls(in_ch, out_ch, temb, **common))
        self.down_blocks = nn.CellList(down)

        self.mid_block = None
        if c.mid_block_type is not None:
            self.mid_block = UNetMidBlock2D(boc[-1], temb, resnet_eps=eps, resnet_groups=mid_groups,
                                            add_attention=c.add_attention,
                                            attention_head_dim=c.attention_head_dim or boc[-1],
                                            output_scale_factor=c.mid_block_scale_factor,
                                            resnet_time_scale_shift=c.resnet_time_scale_shift,
                                            attn_groups=c.attn_norm_num_groups, dtype=dtype)

        rev = tuple(reversed(boc))
        up = []
        out_ch = rev[0]
        for i, kind in enumerate(c.up_block_types):
            prev_ch, out_ch, in_ch = out_ch, rev[i], rev[min(i + 1, n - 1)]
            common = self._block_args(kind, out_ch, num_layers=c.layers_per_block + 1, add_upsample=i < n - 1)
            cls, resample = _UP[kind]
            if resample is not None:
                common["upsample_type"] = c.upsample_type if resample == "config" else resample
            up.append(cls(in_ch, prev_ch, out_ch, temb, **common))
        self.up_blocks = nn.CellList(up)

        self.down_skip = tuple(t in _SKIP for t in c.down_block_types)
        self.up_skip = tuple(t in _SKIP for t in c.up_block_types)
        self.conv_norm_out = GroupNorm(out_groups, boc[0], eps=eps, dtype=dtype)
        self.conv_out = Conv2d(boc[0], c.out_channels, 3, padding=1, dtype=dtype)

    def _block_args(self, kind: str, out_ch: int, **kwargs) -> dict:
        """Constructor arguments every block type of this net shares."""
        c = self.config
        kwargs.update(resnet_eps=c.norm_eps, resnet_time_scale_shift=c.resnet_time_scale_shift,
                      dtype=self.compute_dtype)
        if kind not in _SKIP:
            kwargs["resnet_groups"] = c.norm_num_groups
        if kind.startswith("Attn"):
            kwargs["attention_head_dim"] = c.attention_head_dim or out_ch
        return kwargs

    def _time_features(self, t: Tensor) -> Tensor:
        if self.config.time_embedding_type == "learned":
            return self.time_proj(t.astype(ms.int32))
        return self.time_proj(t)

    def _embedding(self, timestep, b: int, class_labels) -> tuple:
        t = batch_timesteps(timestep, b)
        emb = self.time_embedding(self._time_features(t).astype(self.compute_dtype))
        kind = self.config.class_embed_type
        if self.class_embedding is None and kind != "identity":
            if class_labels is not None:
                raise ValueError("UNet2DModel: class_labels given but the model has no class embedding "
                                 "(num_class_embeds and class_embed_type are None)")
            return emb, t
        if class_labels is None:
            raise ValueError("UNet2DModel: this model is class-conditional; pass class_labels")
        if kind == "identity":
            class_emb = class_labels
        elif kind == "timestep":
            class_emb = self.class_embedding(self._time_features(class_labels.astype(ms.float32).reshape(-1))
                                             .astype(self.compute_dtype))
        else:
            class_emb = self.class_embedding(class_labels.astype(ms.int32).reshape(-1))
        return emb + class_emb.astype(self.compute_dtype), t

    def construct(self, sample: Float[Tensor, "b c h w"], timestep,
                  class_labels: Int[Tensor, "b"] = None) -> Float[Tensor, "b o h w"]:
        sample = sample.astype(self.compute_dtype)
        b = sample.shape[0]
        if self.config.center_input_sample:
            sample = 2 * sample - 1.0
        emb, t = self._embedding(timestep, b, class_labels)

        # down path: conv_in, then every resnet/attention output and downsample is a skip
        skip_sample = sample
        sample = self.conv_in(sample)
        skips = (sample,)
        for i in range(len(self.down_blocks)):
            if self.down_skip[i]:
                sample, res, skip_sample = self.down_blocks[i](sample, emb, skip_sample)
            else:
                sample, res = self.down_blocks[i](sample, emb)
            skips = skips + res
        if self.mid_block is not None:
            sample = self.mid_block(sample, emb)

        # up path: each up block eats as many skips as it has resnets; skip blocks build an output image
        skip_sample = None
        for i in range(len(self.up_blocks)):
            block = self.up_blocks[i]
            k = len(block.resnets)
            res, skips = skips[len(skips) - k:], skips[:len(skips) - k]
            if self.up_skip[i]:
                sample, skip_sample = block(sample, res, emb, skip_sample)
            else:
                sample = block(sample, res, emb)

        sample = self.conv_out(ops.silu(self.conv_norm_out(sample)))
        if skip_sample is not None:
            sample = sample + skip_sample
        if self.config.time_embedding_type == "fourier":
            sample = sample / t.astype(sample.dtype).reshape(b, 1, 1, 1)
        return sample
