"""The down, mid and up blocks of UNet3DConditionModel (ModelScope text-to-video) and I2VGenXLUNet.

Each layer is resnet -> TemporalConvLayer, and in the cross-attention blocks then Transformer2DModel ->
TransformerTemporalModel. Features are frame batches [b * f, c, h, w]. Down blocks are called as
block(x, temb, context, num_frames) -> (x, skips); up blocks as block(x, skips, temb, context, num_frames,
upsample_size) -> x; plain blocks accept and ignore `context`.
"""
import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .resampling import Downsample2D, Upsample2D
from .resnet import ResnetBlock2D
from .temporal import TemporalConvLayer, TransformerTemporalModel
from .transformer_2d import Transformer2DModel


def spatial_and_temporal_transformers(num_layers: int, channels: int, head_dim: int, cross_attention_dim: int,
                                      groups: int, use_linear_projection: bool, only_cross_attention: bool,
                                      dtype) -> tuple:
    """(attentions, temp_attentions) CellLists; diffusers' 3D blocks pass `num_attention_heads` as the head width,
    so each has channels // head_dim heads of head_dim channels."""
    heads = channels // head_dim
    attentions = nn.CellList([
        Transformer2DModel(heads, head_dim, channels, 1, cross_attention_dim, groups, use_linear_projection,
                           only_cross_attention, dtype=dtype)
        for _ in range(num_layers)])
    temporal = nn.CellList([
        TransformerTemporalModel(heads, head_dim, channels, 1, groups, cross_attention_dim=cross_attention_dim,
                                 dtype=dtype)
        for _ in range(num_layers)])
    return attentions, temporal


class DownBlock3D(nn.Cell):
    """num_layers (resnet, temporal conv) pairs, then an optional stride-2 conv; every output is a skip."""

    has_cross_attention = False

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int = 1,
                 resnet_eps: float = 1e-6, resnet_groups: int = 32, add_downsample: bool = True,
                 downsample_padding: int = 1, dtype=ms.float32):
        super().__init__()
        self.resnets = nn.CellList([
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels, resnet_groups,
                          eps=resnet_eps, dtype=dtype)
            for i in range(num_layers)])
        self.temp_convs = nn.CellList([TemporalConvLayer(out_channels, out_channels, resnet_groups, dtype=dtype)
                                       for _ in range(num_layers)])
        self.downsamplers = None
        if add_downsample:
            self.downsamplers = nn.CellList([Downsample2D(out_channels, True, out_channels, downsample_padding,
                                                          dtype=dtype)])

    def _attend(self, i: int, x: Tensor, context: Tensor, num_frames: int) -> Tensor:
        return x

    def construct(self, x: Float[Tensor, "bf c h w"], temb: Float[Tensor, "bf t"], context: Float[Tensor, "bf m d"],
                  num_frames: int) -> tuple:
        skips = ()
        for i in range(len(self.resnets)):
            x = self.temp_convs[i](self.resnets[i](x, temb), num_frames)
            x = self._attend(i, x, context, num_frames)
            skips = skips + (x,)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips = skips + (x,)
        return x, skips


class CrossAttnDownBlock3D(DownBlock3D):
    """DownBlock3D with a Transformer2DModel and a TransformerTemporalModel after each temporal conv."""

    has_cross_attention = True

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int = 1,
                 num_attention_heads: int = 1, cross_attention_dim: int = 1280, resnet_eps: float = 1e-6,
                 resnet_groups: int = 32, add_downsample: bool = True, downsample_padding: int = 1,
                 use_linear_projection: bool = True, only_cross_attention: bool = False, dtype=ms.float32):
        super().__init__(in_channels, out_channels, temb_channels, num_layers, resnet_eps, resnet_groups,
                         add_downsample, downsample_padding, dtype)
        self.attentions, self.temp_attentions = spatial_and_temporal_transformers(
            num_layers, out_channels, num_attention_heads, cross_attention_dim, resnet_groups, use_linear_projection,
            only_cross_attention, dtype)

    def _attend(self, i: int, x: Tensor, context: Tensor, num_frames: int) -> Tensor:
        return self.temp_attentions[i](self.attentions[i](x, context), num_frames)


class UpBlock3D(nn.Cell):
    """num_layers (resnet on [x; skip], temporal conv) pairs, last skip first, then an optional upsampler."""

    has_cross_attention = False

    def __init__(self, in_channels: int, prev_output_channel: int, out_channels: int, temb_channels: int,
                 num_layers: int = 1, resnet_eps: float = 1e-6, resnet_groups: int = 32, add_upsample: bool = True,
                 dtype=ms.float32):
        super().__init__()
        resnets = []
        for i in range(num_layers):
            skip_channels = in_channels if i == num_layers - 1 else out_channels
            resnet_in = prev_output_channel if i == 0 else out_channels
            resnets.append(ResnetBlock2D(resnet_in + skip_channels, out_channels, temb_channels, resnet_groups,
                                         eps=resnet_eps, dtype=dtype))
        self.resnets = nn.CellList(resnets)
        self.temp_convs = nn.CellList([TemporalConvLayer(out_channels, out_channels, resnet_groups, dtype=dtype)
                                       for _ in range(num_layers)])
        self.upsamplers = None
        if add_upsample:
            self.upsamplers = nn.CellList([Upsample2D(out_channels, True, out_channels, dtype=dtype)])

    def _attend(self, i: int, x: Tensor, context: Tensor, num_frames: int) -> Tensor:
        return x

    def construct(self, x: Float[Tensor, "bf c h w"], skips: tuple, temb: Float[Tensor, "bf t"],
                  context: Float[Tensor, "bf m d"], num_frames: int, upsample_size=None) -> Float[Tensor, "bf o h2 w2"]:
        n = len(self.resnets)
        for i in range(n):
            x = mops.cat((x, skips[n - 1 - i]), axis=1)
            x = self.temp_convs[i](self.resnets[i](x, temb), num_frames)
            x = self._attend(i, x, context, num_frames)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, upsample_size)
        return x


class CrossAttnUpBlock3D(UpBlock3D):
    """UpBlock3D with a Transformer2DModel and a TransformerTemporalModel after each temporal conv."""

    has_cross_attention = True

    def __init__(self, in_channels: int, prev_output_channel: int, out_channels: int, temb_channels: int,
                 num_layers: int = 1, num_attention_heads: int = 1, cross_attention_dim: int = 1280,
                 resnet_eps: float = 1e-6, resnet_groups: int = 32, add_upsample: bool = True,
                 use_linear_projection: bool = True, only_cross_attention: bool = False, dtype=ms.float32):
        super().__init__(in_channels, prev_output_channel, out_channels, temb_channels, num_layers, resnet_eps,
                         resnet_groups, add_upsample, dtype)
        self.attentions, self.temp_attentions = spatial_and_temporal_transformers(
            num_layers, out_channels, num_attention_heads, cross_attention_dim, resnet_groups, use_linear_projection,
            only_cross_attention, dtype)

    def _attend(self, i: int, x: Tensor, context: Tensor, num_frames: int) -> Tensor:
        return self.temp_attentions[i](self.attentions[i](x, context), num_frames)


class UNetMidBlock3DCrossAttn(nn.Cell):
    """(resnet, temporal conv), then num_layers times (transformer, temporal transformer, resnet, temporal conv)."""

    def __init__(self, in_channels: int, temb_channels: int, num_layers: int = 1, num_attention_heads: int = 1,
                 cross_attention_dim: int = 1280, resnet_eps: float = 1e-6, resnet_groups: int = 32,
                 output_scale_factor: float = 1.0, use_linear_projection: bool = True, dtype=ms.float32):
        super().__init__()
        self.resnets = nn.CellList([
            ResnetBlock2D(in_channels, in_channels, temb_channels, resnet_groups, eps=resnet_eps,
                          output_scale_factor=output_scale_factor, dtype=dtype)
            for _ in range(num_layers + 1)])
        self.temp_convs = nn.CellList([TemporalConvLayer(in_channels, in_channels, resnet_groups, dtype=dtype)
                                       for _ in range(num_layers + 1)])
        self.attentions, self.temp_attentions = spatial_and_temporal_transformers(
            num_layers, in_channels, num_attention_heads, cross_attention_dim, resnet_groups, use_linear_projection,
            False, dtype)

    def construct(self, x: Float[Tensor, "bf c h w"], temb: Float[Tensor, "bf t"], context: Float[Tensor, "bf m d"],
                  num_frames: int) -> Float[Tensor, "bf c h w"]:
        x = self.temp_convs[0](self.resnets[0](x, temb), num_frames)
        for i in range(len(self.attentions)):
            x = self.temp_attentions[i](self.attentions[i](x, context), num_frames)
            x = self.temp_convs[i + 1](self.resnets[i + 1](x, temb), num_frames)
        return x
