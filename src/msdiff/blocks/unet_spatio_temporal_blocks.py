"""The blocks of Stable Video Diffusion's UNetSpatioTemporalConditionModel and of its temporal VAE decoder.

UNet down blocks are called as block(x, temb, context, image_only_indicator) -> (x, skips); up blocks as
block(x, skips, temb, context, image_only_indicator, upsample_size) -> x; plain blocks ignore `context`.
Features are frame batches [b * f, c, h, w]; image_only_indicator [b, f] carries the frame count.
"""
import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .attention import Attention
from .resampling import Downsample2D, Upsample2D
from .spatio_temporal import SpatioTemporalResBlock, TransformerSpatioTemporalModel


def _transformers(num_layers: int, channels: int, heads: int, depth, cross_attention_dim: int, dtype) -> nn.CellList:
    depths = tuple(depth) if isinstance(depth, (tuple, list)) else (depth,) * num_layers
    return nn.CellList([TransformerSpatioTemporalModel(heads, channels // heads, channels, depths[i],
                                                       cross_attention_dim, dtype=dtype)
                        for i in range(num_layers)])


class DownBlockSpatioTemporal(nn.Cell):
    """num_layers SpatioTemporalResBlocks, then an optional stride-2 conv; every output is a skip."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int = 1,
                 add_downsample: bool = True, resnet_eps: float = 1e-5, dtype=ms.float32):
        super().__init__()
        self.resnets = nn.CellList([
            SpatioTemporalResBlock(in_channels if i == 0 else out_channels, out_channels, temb_channels,
                                   eps=resnet_eps, dtype=dtype)
            for i in range(num_layers)])
        self.downsamplers = None
        if add_downsample:
            self.downsamplers = nn.CellList([Downsample2D(out_channels, True, out_channels, 1, dtype=dtype)])

    def _attend(self, i: int, x: Tensor, context: Tensor, indicator: Tensor) -> Tensor:
        return x

    def construct(self, x: Float[Tensor, "bf c h w"], temb: Float[Tensor, "bf t"], context: Float[Tensor, "bf m d"],
                  image_only_indicator: Float[Tensor, "b f"]) -> tuple:
        skips = ()
        for i in range(len(self.resnets)):
            x = self._attend(i, self.resnets[i](x, temb, image_only_indicator), context, image_only_indicator)
            skips = skips + (x,)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips = skips + (x,)
        return x, skips


class CrossAttnDownBlockSpatioTemporal(DownBlockSpatioTemporal):
    """DownBlockSpatioTemporal (resnet eps 1e-6) with a TransformerSpatioTemporalModel after each resnet."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int = 1,
                 transformer_layers_per_block=1, num_attention_heads: int = 1, cross_attention_dim: int = 1280,
                 add_downsample: bool = True, dtype=ms.float32):
        super().__init__(in_channels, out_channels, temb_channels, num_layers, add_downsample, 1e-6, dtype)
        self.attentions = _transformers(num_layers, out_channels, num_attention_heads, transformer_layers_per_block,
                                        cross_attention_dim, dtype)

    def _attend(self, i: int, x: Tensor, context: Tensor, indicator: Tensor) -> Tensor:
        return self.attentions[i](x, context, indicator)


class UpBlockSpatioTemporal(nn.Cell):
    """num_layers SpatioTemporalResBlocks on [x; skip] (last skip first), then an optional upsampler."""

    def __init__(self, in_channels: int, prev_output_channel: int, out_channels: int, temb_channels: int,
                 num_layers: int = 1, resnet_eps: float = 1e-6, add_upsample: bool = True, dtype=ms.float32):
        super().__init__()
        resnets = []
        for i in range(num_layers):
            skip_channels = in_channels if i == num_layers - 1 else out_channels
            resnet_in = prev_output_channel if i == 0 else out_channels
            resnets.append(SpatioTemporalResBlock(resnet_in + skip_channels, out_channels, temb_channels,
                                                  eps=resnet_eps, dtype=dtype))
        self.resnets = nn.CellList(resnets)
        self.upsamplers = None
        if add_upsample:
            self.upsamplers = nn.CellList([Upsample2D(out_channels, True, out_channels, dtype=dtype)])

    def _attend(self, i: int, x: Tensor, context: Tensor, indicator: Tensor) -> Tensor:
        return x

    def construct(self, x: Float[Tensor, "bf c h w"], skips: tuple, temb: Float[Tensor, "bf t"],
                  context: Float[Tensor, "bf m d"], image_only_indicator: Float[Tensor, "b f"],
                  upsample_size=None) -> Float[Tensor, "bf o h2 w2"]:
        n = len(self.resnets)
        for i in range(n):
            x = mops.cat((x, skips[n - 1 - i]), axis=1)
            x = self._attend(i, self.resnets[i](x, temb, image_only_indicator), context, image_only_indicator)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, upsample_size)
        return x


class CrossAttnUpBlockSpatioTemporal(UpBlockSpatioTemporal):
    """UpBlockSpatioTemporal with a TransformerSpatioTemporalModel after each resnet."""

    def __init__(self, in_channels: int, prev_output_channel: int, out_channels: int, temb_channels: int,
                 num_layers: int = 1, transformer_layers_per_block=1, resnet_eps: float = 1e-6,
                 num_attention_heads: int = 1, cross_attention_dim: int = 1280, add_upsample: bool = True,
                 dtype=ms.float32):
        super().__init__(in_channels, prev_output_channel, out_channels, temb_channels, num_layers, resnet_eps,
                         add_upsample, dtype)
        self.attentions = _transformers(num_layers, out_channels, num_attention_heads, transformer_layers_per_block,
                                        cross_attention_dim, dtype)

    def _attend(self, i: int, x: Tensor, context: Tensor, indicator: Tensor) -> Tensor:
        return self.attentions[i](x, context, indicator)


class UNetMidBlockSpatioTemporal(nn.Cell):
    """resnet, then (spatio-temporal transformer, resnet) num_layers times; resnet eps 1e-5."""

    def __init__(self, in_channels: int, temb_channels: int, num_layers: int = 1, transformer_layers_per_block=1,
                 num_attention_heads: int = 1, cross_attention_dim: int = 1280, dtype=ms.float32):
        super().__init__()
        self.resnets = nn.CellList([SpatioTemporalResBlock(in_channels, in_channels, temb_channels, eps=1e-5,
                                                           dtype=dtype)
                                    for _ in range(num_layers + 1)])
        self.attentions = _transformers(num_layers, in_channels, num_attention_heads, transformer_layers_per_block,
                                        cross_attention_dim, dtype)

    def construct(self, x: Float[Tensor, "bf c h w"], temb: Float[Tensor, "bf t"], context: Float[Tensor, "bf m d"],
                  image_only_indicator: Float[Tensor, "b f"]) -> Float[Tensor, "bf c h w"]:
        x = self.resnets[0](x, temb, image_only_indicator)
        for i in range(len(self.attentions)):
            x = self.attentions[i](x, context, image_only_indicator)
            x = self.resnets[i + 1](x, temb, image_only_indicator)
        return x


def _decoder_resnet(in_channels: int, out_channels: int, dtype) -> SpatioTemporalResBlock:
    """The temporal decoder's resnet: no time embedding, temporal eps 1e-5, learned mix starting at
    sigmoid(0), spatial and temporal swapped in the blend."""
    return SpatioTemporalResBlock(in_channels, out_channels, None, eps=1e-6, temporal_eps=1e-5, merge_factor=0.0,
                                  merge_strategy="learned", switch_spatial_to_temporal_mix=True, dtype=dtype)


class MidBlockTemporalDecoder(nn.Cell):
    """resnet, then (group-normed self-attention with residual, resnet) for the remaining num_layers - 1 resnets
    (diffusers keeps one attention: only the first pair runs)."""

    def __init__(self, in_channels: int, out_channels: int, attention_head_dim: int = 512, num_layers: int = 1,
                 dtype=ms.float32):
        super().__init__()
        self.resnets = nn.CellList([_decoder_resnet(in_channels if i == 0 else out_channels, out_channels, dtype)
                                    for i in range(num_layers)])
        self.attentions = nn.CellList([
            Attention(in_channels, None, in_channels // attention_head_dim, attention_head_dim, bias=True,
                      norm_num_groups=32, eps=1e-6, residual_connection=True, dtype=dtype)])

    def construct(self, x: Float[Tensor, "bf c h w"],
                  image_only_indicator: Float[Tensor, "b f"]) -> Float[Tensor, "bf o h w"]:
        x = self.resnets[0](x, None, image_only_indicator)
        for i in range(min(len(self.resnets) - 1, len(self.attentions))):
            x = self.resnets[i + 1](self.attentions[i](x), None, image_only_indicator)
        return x


class UpBlockTemporalDecoder(nn.Cell):
    """num_layers temporal-decoder resnets, then an optional nearest-x2 + conv upsampler."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int = 1, add_upsample: bool = True,
                 dtype=ms.float32):
        super().__init__()
        self.resnets = nn.CellList([_decoder_resnet(in_channels if i == 0 else out_channels, out_channels, dtype)
                                    for i in range(num_layers)])
        self.upsamplers = None
        if add_upsample:
            self.upsamplers = nn.CellList([Upsample2D(out_channels, True, out_channels, dtype=dtype)])

    def construct(self, x: Float[Tensor, "bf c h w"],
                  image_only_indicator: Float[Tensor, "b f"]) -> Float[Tensor, "bf o h2 w2"]:
        for resnet in self.resnets:
            x = resnet(x, None, image_only_indicator)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x
