"""VQModel (the vector-quantised autoencoder of the LDM pipelines): encode, nearest-codebook quantize, decode.

`encode(x) -> h` (pre-quantisation latents), `quantize(h) -> (z_q, indices)` and
`decode(h, force_not_quantize=False) -> x` follow diffusers' VQModel (decode quantizes first unless
told not to). Encoder/Decoder are AutoencoderKL's, with a single-width encoder output (double_z off).
norm_type "spatial" (MoVQ, Kandinsky's image decoder) swaps in blocks.spatial_norm.SpatialDecoder, whose norms
are modulated by the quantized latents, and allows the attention encoder / decoder blocks.
The codebook search runs in fp32 whatever the compute dtype (diffusers never casts `quantize`).
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .. import ops
from ..blocks.layers import Conv2d, Embedding
from ..blocks.spatial_norm import AttnDownEncoderBlock2D, SpatialDecoder
from ._config import read_config
from ._keys import modern_attention_key
from .autoencoder_kl import AutoencoderKLConfig, Decoder, Encoder


@dataclass(frozen=True)
class VQModelConfig:
    """diffusers' VQModel config fields (diffusers' defaults)."""

    in_channels: int = 3
    out_channels: int = 3
    down_block_types: Tuple[str, ...] = ("DownEncoderBlock2D",)
    up_block_types: Tuple[str, ...] = ("UpDecoderBlock2D",)
    block_out_channels: Tuple[int, ...] = (64,)
    layers_per_block: int = 1
    latent_channels: int = 3
    sample_size: int = 32
    num_vq_embeddings: int = 256
    norm_num_groups: int = 32
    vq_embed_dim: Optional[int] = None
    scaling_factor: float = 0.18215
    mid_block_add_attention: bool = True
    force_upcast: bool = False
    norm_type: str = "group"


_FIXED = {"act_fn": ("silu", "swish"), "norm_type": ("group", "spatial"), "lookup_from_codebook": (False,)}


def config_from_diffusers(d: dict) -> VQModelConfig:
    """VQModelConfig from a diffusers config.json dict; ValueError names unsupported keys/values."""
    cfg = read_config(VQModelConfig, d, "VQModel", _FIXED)
    bad = [t for t in cfg.down_block_types if t not in ("DownEncoderBlock2D", "AttnDownEncoderBlock2D")]
    up = ("UpDecoderBlock2D", "AttnUpDecoderBlock2D") if cfg.norm_type == "spatial" else ("UpDecoderBlock2D",)
    bad += [t for t in cfg.up_block_types if t not in up]
    if bad:
        raise ValueError(f"VQModel: block types {bad} are not supported by msdiff")
    return cfg


def map_weights(key: str) -> str:
    """diffusers state-dict key -> msdiff parameter name: the trees match; pre-0.14 attention names
    (query/key/value/proj_attn) are renamed as diffusers does on load."""
    return modern_attention_key(key)


class VectorQuantizer(nn.Cell):
    """Codebook `embedding.weight[n, d]`: each latent pixel snaps to its nearest (L2) code vector."""

    def __init__(self, num_embeddings: int, dim: int, dtype=ms.float32):
        super().__init__()
        self.embedding = Embedding(num_embeddings, dim, dtype=dtype)

    def construct(self, z: Float[Tensor, "b d h w"]):
        b, d, h, w = z.shape
        flat = z.astype(ms.float32).transpose(0, 2, 3, 1).reshape(-1, d)
        table = self.embedding.weight.astype(ms.float32)
        dist = (flat * flat).sum(axis=1, keepdims=True) + (table * table).sum(axis=1).reshape(1, -1) \
            - 2.0 * mops.matmul(flat, table.transpose(1, 0))
        indices = mops.argmin(dist, 1)
        z_q = ops.embedding(indices, table).reshape(b, h, w, d).transpose(0, 3, 1, 2)
        z32 = z.astype(ms.float32)
        return (z32 + (z_q - z32)).astype(z.dtype), indices


class VQModel(nn.Cell):
    """VQ-VAE: encode(x) -> h, quantize(h) -> (z_q, indices), decode(h) -> x; construct(h) == decode(h)."""

    def __init__(self, config: VQModelConfig, dtype=ms.float32):
        super().__init__()
        c = self.config = config
        self.compute_dtype = dtype
        self.scaling_factor = c.scaling_factor
        self.force_upcast = c.force_upcast
        kl = AutoencoderKLConfig(
            in_channels=c.in_channels, out_channels=c.out_channels, down_block_types=c.down_block_types,
            up_block_types=c.up_block_types, block_out_channels=c.block_out_channels,
            layers_per_block=c.layers_per_block, latent_channels=c.latent_channels,
            norm_num_groups=c.norm_num_groups, mid_block_add_attention=c.mid_block_add_attention)
        lc = c.latent_channels
        vq = c.vq_embed_dim if c.vq_embed_dim is not None else lc
        self.encoder = Encoder(kl, dtype)
        self.encoder.conv_out = Conv2d(c.block_out_channels[-1], lc, 3, padding=1, dtype=dtype)
        boc = c.block_out_channels
        for i, kind in enumerate(c.down_block_types):
            if kind == "AttnDownEncoderBlock2D":
                self.encoder.down_blocks[i] = AttnDownEncoderBlock2D(
                    boc[max(i - 1, 0)], boc[i], c.layers_per_block, 1e-6, c.norm_num_groups,
                    add_downsample=i < len(boc) - 1, downsample_padding=0, dtype=dtype)
        self.quant_conv = Conv2d(lc, vq, 1, dtype=dtype)
        self.quantize = VectorQuantizer(c.num_vq_embeddings, vq, dtype=ms.float32)
        self.post_quant_conv = Conv2d(vq, lc, 1, dtype=dtype)
        self.spatial = c.norm_type == "spatial"
        if self.spatial:
            self.decoder = SpatialDecoder(lc, c.out_channels, boc, c.up_block_types, c.layers_per_block,
                                          c.mid_block_add_attention, dtype)
        else:
            self.decoder = Decoder(kl, dtype)

    def encode(self, x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b d h2 w2"]:
        """Latents before quantisation (encoder then quant_conv)."""
        return self.quant_conv(self.encoder(x.astype(self.compute_dtype)))

    def decode(self, h: Float[Tensor, "b d h w"], force_not_quantize: bool = False) -> Float[Tensor, "b c h2 w2"]:
        """Image from latents, quantized to the codebook first unless force_not_quantize."""
        h = h.astype(self.compute_dtype)
        if not force_not_quantize:
            h, _ = self.quantize(h)
        if self.spatial:
            return self.decoder(self.post_quant_conv(h), h)
        return self.decoder(self.post_quant_conv(h))

    def construct(self, h: Float[Tensor, "b d h w"]) -> Float[Tensor, "b c h2 w2"]:
        return self.decode(h)

