"""MoVQ's blocks (Zheng et al. 2022, "MoVQ: Modulating Quantized Vectors for High-Fidelity Image Generation"):
the decoder whose every normalisation is modulated by the quantized latents (SpatialNorm), and the attention
encoder block of Kandinsky's MoVQ.

The decoder blocks are called as block(x, zq): zq, the quantized latents, is resized (nearest) to each feature map.
"""
import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn

from .. import ops
from .attention import Attention
from .layers import Conv2d, GroupNorm
from .resampling import Upsample2D
from .unet_2d_model_blocks import _spatial_attentions
from .vae_blocks import DownEncoderBlock2D


class SpatialNorm(nn.Cell):
    """GroupNorm(32, eps 1e-6)(f) * conv_y(zq) + conv_b(zq), zq resized to f (diffusers' SpatialNorm)."""

    def __init__(self, f_channels: int, zq_channels: int, dtype=ms.float32):
        super().__init__()
        self.norm_layer = GroupNorm(32, f_channels, eps=1e-6, dtype=dtype)
        self.conv_y = Conv2d(zq_channels, f_channels, 1, dtype=dtype)
        self.conv_b = Conv2d(zq_channels, f_channels, 1, dtype=dtype)

    def construct(self, f: Float[Tensor, "b c h w"], zq: Float[Tensor, "b z k l"]) -> Float[Tensor, "b c h w"]:
        zq = ops.interpolate(zq, size=tuple(f.shape[2:]), mode="nearest")
        return self.norm_layer(f) * self.conv_y(zq) + self.conv_b(zq)


class SpatialNormResnetBlock2D(nn.Cell):
    """SpatialNorm-SiLU-conv residual block (diffusers' ResnetBlockCondNorm2D, time_embedding_norm "spatial")."""

    def __init__(self, in_channels: int, out_channels: int, zq_channels: int, dtype=ms.float32):
        super().__init__()
        self.norm1 = SpatialNorm(in_channels, zq_channels, dtype)
        self.conv1 = Conv2d(in_channels, out_channels, 3, padding=1, dtype=dtype)
        self.norm2 = SpatialNorm(out_channels, zq_channels, dtype)
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1, dtype=dtype)
        self.conv_shortcut = Conv2d(in_channels, out_channels, 1, dtype=dtype) if in_channels != out_channels else None

    def construct(self, x: Float[Tensor, "b c h w"], zq: Float[Tensor, "b z k l"]) -> Float[Tensor, "b o h w"]:
        h = self.conv1(ops.silu(self.norm1(x, zq)))
        h = self.conv2(ops.silu(self.norm2(h, zq)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class SpatialNormAttention(Attention):
    """Single-head residual self-attention over a feature map, SpatialNorm-ed first (`spatial_norm`)."""

    def __init__(self, channels: int, zq_channels: int, dtype=ms.float32):
        super().__init__(channels, heads=1, dim_head=channels, bias=True, dtype=dtype)
        self.spatial_norm = SpatialNorm(channels, zq_channels, dtype)

    def construct(self, x: Float[Tensor, "b c h w"], zq: Float[Tensor, "b z k l"]) -> Float[Tensor, "b c h w"]:
        return super().construct(self.spatial_norm(x, zq)) + x


class SpatialUpDecoderBlock2D(nn.Cell):
    """num_layers SpatialNorm resnets (no skips), then an optional nearest-x2 + conv upsampler."""

    def __init__(self, in_channels: int, out_channels: int, zq_channels: int, num_layers: int = 1,
                 add_upsample: bool = True, dtype=ms.float32):
        super().__init__()
        self.resnets = nn.CellList([
            SpatialNormResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, zq_channels, dtype)
            for i in range(num_layers)])
        self.attentions = None
        self.upsamplers = None
        if add_upsample:
            self.upsamplers = nn.CellList([Upsample2D(out_channels, True, out_channels, dtype=dtype)])

    def construct(self, x: Float[Tensor, "b c h w"], zq: Float[Tensor, "b z k l"]) -> Float[Tensor, "b o h2 w2"]:
        for i in range(len(self.resnets)):
            x = self.resnets[i](x, zq)
            if self.attentions is not None:
                x = self.attentions[i](x, zq)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class SpatialAttnUpDecoderBlock2D(SpatialUpDecoderBlock2D):
    """SpatialUpDecoderBlock2D with a SpatialNormAttention after each resnet (AttnUpDecoderBlock2D, spatial)."""

    def __init__(self, in_channels: int, out_channels: int, zq_channels: int, num_layers: int = 1,
                 add_upsample: bool = True, dtype=ms.float32):
        super().__init__(in_channels, out_channels, zq_channels, num_layers, add_upsample, dtype)
        self.attentions = nn.CellList([SpatialNormAttention(out_channels, zq_channels, dtype)
                                       for _ in range(num_layers)])


class SpatialMidBlock2D(nn.Cell):
    """resnet, then (SpatialNormAttention, resnet) once; attention optional (mid_block_add_attention)."""

    def __init__(self, channels: int, zq_channels: int, add_attention: bool = True, dtype=ms.float32):
        super().__init__()
        self.resnets = nn.CellList([SpatialNormResnetBlock2D(channels, channels, zq_channels, dtype)
                                    for _ in range(2)])
        self.attentions = nn.CellList([SpatialNormAttention(channels, zq_channels, dtype)]) if add_attention else None

    def construct(self, x: Float[Tensor, "b c h w"], zq: Float[Tensor, "b z k l"]) -> Float[Tensor, "b c h w"]:
        x = self.resnets[0](x, zq)
        if self.attentions is not None:
            x = self.attentions[0](x, zq)
        return self.resnets[1](x, zq)


_UP = {"UpDecoderBlock2D": SpatialUpDecoderBlock2D, "AttnUpDecoderBlock2D": SpatialAttnUpDecoderBlock2D}


class SpatialDecoder(nn.Cell):
    """MoVQ decoder: conv_in, SpatialNorm mid block and up blocks, SpatialNorm-SiLU-conv_out; decoder(z, zq)."""

    def __init__(self, latent_channels: int, out_channels: int, block_out_channels: tuple, up_block_types: tuple,
                 layers_per_block: int, mid_block_add_attention: bool = True, dtype=ms.float32):
        super().__init__()
        rev = tuple(reversed(block_out_channels))
        zq = latent_channels
        self.conv_in = Conv2d(latent_channels, rev[0], 3, padding=1, dtype=dtype)
        self.mid_block = SpatialMidBlock2D(rev[0], zq, mid_block_add_attention, dtype)
        self.up_blocks = nn.CellList([
            _UP[kind](rev[max(i - 1, 0)], rev[i], zq, layers_per_block + 1, i < len(rev) - 1, dtype)
            for i, kind in enumerate(up_block_types)])
        self.conv_norm_out = SpatialNorm(block_out_channels[0], zq, dtype)
        self.conv_out = Conv2d(block_out_channels[0], out_channels, 3, padding=1, dtype=dtype)

    def construct(self, z: Float[Tensor, "b l h w"], zq: Float[Tensor, "b l h w"]) -> Float[Tensor, "b c h2 w2"]:
        x = self.mid_block(self.conv_in(z), zq)
        for block in self.up_blocks:
            x = block(x, zq)
        return self.conv_out(ops.silu(self.conv_norm_out(x, zq)))


class AttnDownEncoderBlock2D(DownEncoderBlock2D):
    """DownEncoderBlock2D with a group-normed residual self-attention after each resnet (one head)."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int = 1, resnet_eps: float = 1e-6,
                 resnet_groups: int = 32, add_downsample: bool = True, downsample_padding: int = 1,
                 dtype=ms.float32):
        super().__init__(in_channels, out_channels, num_layers, resnet_eps, resnet_groups, add_downsample,
                         downsample_padding, dtype)
        self.attentions = _spatial_attentions(num_layers, out_channels, out_channels, resnet_groups, resnet_eps,
                                              dtype)

    def construct(self, x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b o h2 w2"]:
        for i in range(len(self.resnets)):
            x = self.attentions[i](self.resnets[i](x))
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        return x
