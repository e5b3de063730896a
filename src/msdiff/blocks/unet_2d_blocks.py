"""The down, mid and up blocks of SD's UNet2DConditionModel (resnets, optional spatial transformers, resampler).

All down blocks are called as block(x, temb, context) -> (x, skips); all up blocks as
block(x, skips, temb, context, upsample_size) -> x, so the UNet drives them in one loop.
Plain blocks accept and ignore `context`.
"""
import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .resampling import Downsample2D, Upsample2D
from .resnet import DownResnetBlock2D, ResnetBlock2D, UpResnetBlock2D
from .transformer_2d import Transformer2DModel


def _per_layer(value, num_layers: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * num_layers


def _transformers(num_layers: int, out_channels: int, num_attention_heads: int, transformer_layers_per_block,
                  cross_attention_dim: int, groups: int, use_linear_projection: bool, only_cross_attention: bool,
                  dtype) -> nn.CellList:
    depths = _per_layer(transformer_layers_per_block, num_layers)
    return nn.CellList([
        Transformer2DModel(num_attention_heads, out_channels // num_attention_heads, out_channels, depths[i],
                           cross_attention_dim, groups, use_linear_projection, only_cross_attention, dtype=dtype)
        for i in range(num_layers)])


def _check_resample_type(name: str, value: str) -> None:
    if value not in ("conv", "resnet"):
        raise ValueError(f"{name} must be 'conv' or 'resnet', got {value!r}")


class DownBlock2D(nn.Cell):
    """num_layers resnets, then an optional downsampler; every output is a skip.

    downsample_type "conv": stride-2 conv; "resnet": a time-conditioned resnet that average-pools
    (diffusers' ResnetDownsampleBlock2D and AttnDownBlock2D(downsample_type="resnet")).
    """

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int = 1,
                 resnet_eps: float = 1e-6, resnet_time_scale_shift: str = "default", resnet_groups: int = 32,
                 add_downsample: bool = True, downsample_padding: int = 1, dtype=ms.float32,
                 downsample_type: str = "conv"):
        super().__init__()
        _check_resample_type("downsample_type", downsample_type)
        self.resnets = nn.CellList([
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels, resnet_groups,
                          eps=resnet_eps, time_embedding_norm=resnet_time_scale_shift, dtype=dtype)
            for i in range(num_layers)])
        self.resnet_resample = downsample_type == "resnet"
        self.downsamplers = None
        if add_downsample and self.resnet_resample:
            self.downsamplers = nn.CellList([DownResnetBlock2D(out_channels, out_channels, temb_channels,
                                                               resnet_groups, eps=resnet_eps,
                                                               time_embedding_norm=resnet_time_scale_shift,
                                                               dtype=dtype)])
        elif add_downsample:
            self.downsamplers = nn.CellList([Downsample2D(out_channels, True, out_channels, downsample_padding,
                                                          dtype=dtype)])

    def _attend(self, i: int, x: Tensor, context: Tensor) -> Tensor:
        return x

    has_cross_attention = False

    def construct(self, x: Float[Tensor, "b c h w"], temb: Float[Tensor, "b t"],
                  context: Float[Tensor, "b m d"] = None, additional_residual: Float[Tensor, "b o h2 w2"] = None):
        """additional_residual (T2I-Adapter features) is added after the last attention of cross-attention
        blocks, and to the output of plain blocks, where diffusers adds it in place, so the last skip has it too."""
        skips = ()
        n = len(self.resnets)
        for i in range(n):
            x = self._attend(i, self.resnets[i](x, temb), context)
            if self.has_cross_attention and additional_residual is not None and i == n - 1:
                x = x + additional_residual
            skips = skips + (x,)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x, temb) if self.resnet_resample else self.downsamplers[0](x)
            skips = skips + (x,)
        if not self.has_cross_attention and additional_residual is not None:
            x = x + additional_residual
            skips = skips[:-1] + (x,)
        return x, skips


class CrossAttnDownBlock2D(DownBlock2D):
    """DownBlock2D with a Transformer2DModel after each resnet."""

    has_cross_attention = True

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int = 1,
                 transformer_layers_per_block=1, num_attention_heads: int = 1, cross_attention_dim: int = 1280,
                 resnet_eps: float = 1e-6, resnet_time_scale_shift: str = "default", resnet_groups: int = 32,
                 add_downsample: bool = True, downsample_padding: int = 1, use_linear_projection: bool = False,
                 only_cross_attention: bool = False, dtype=ms.float32):
        super().__init__(in_channels, out_channels, temb_channels, num_layers, resnet_eps, resnet_time_scale_shift,
                         resnet_groups, add_downsample, downsample_padding, dtype)
        self.attentions = _transformers(num_layers, out_channels, num_attention_heads, transformer_layers_per_block,
                                        cross_attention_dim, resnet_groups, use_linear_projection,
                                        only_cross_attention, dtype)

    def _attend(self, i: int, x: Tensor, context: Tensor) -> Tensor:
        return self.attentions[i](x, context)


class UpBlock2D(nn.Cell):
    """num_layers resnets, each fed the concatenation with one skip (last first), then an optional upsampler."""

    def __init__(self, in_channels: int, prev_output_channel: int, out_channels: int, temb_channels: int,
                 num_layers: int = 1, resnet_eps: float = 1e-6, resnet_time_scale_shift: str = "default",
                 resnet_groups: int = 32, add_upsample: bool = True, dtype=ms.float32, upsample_type: str = "conv"):
        super().__init__()
        _check_resample_type("upsample_type", upsample_type)
        resnets = []
        for i in range(num_layers):
            skip_channels = in_channels if i == num_layers - 1 else out_channels
            resnet_in = prev_output_channel if i == 0 else out_channels
            resnets.append(ResnetBlock2D(resnet_in + skip_channels, out_channels, temb_channels, resnet_groups,
                                         eps=resnet_eps, time_embedding_norm=resnet_time_scale_shift, dtype=dtype))
        self.resnets = nn.CellList(resnets)
        self.resnet_resample = upsample_type == "resnet"
        self.upsamplers = None
        if add_upsample and self.resnet_resample:
            self.upsamplers = nn.CellList([UpResnetBlock2D(out_channels, out_channels, temb_channels, resnet_groups,
                                                           eps=resnet_eps, time_embedding_norm=resnet_time_scale_shift,
                                                           dtype=dtype)])
        elif add_upsample:
            self.upsamplers = nn.CellList([Upsample2D(out_channels, True, out_channels, dtype=dtype)])

    def _attend(self, i: int, x: Tensor, context: Tensor) -> Tensor:
        return x

    def construct(self, x: Float[Tensor, "b c h w"], skips: tuple, temb: Float[Tensor, "b t"],
                  context: Float[Tensor, "b m d"] = None, upsample_size=None) -> Float[Tensor, "b o h2 w2"]:
        n = len(self.resnets)
        for i in range(n):
            x = mops.cat((x, skips[n - 1 - i]), axis=1)
            x = self._attend(i, self.resnets[i](x, temb), context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, temb) if self.resnet_resample else self.upsamplers[0](x, upsample_size)
        return x


class CrossAttnUpBlock2D(UpBlock2D):
    """UpBlock2D with a Transformer2DModel after each resnet."""

    def __init__(self, in_channels: int, prev_output_channel: int, out_channels: int, temb_channels: int,
                 num_layers: int = 1, transformer_layers_per_block=1, num_attention_heads: int = 1,
                 cross_attention_dim: int = 1280, resnet_eps: float = 1e-6, resnet_time_scale_shift: str = "default",
                 resnet_groups: int = 32, add_upsample: bool = True, use_linear_projection: bool = False,
                 only_cross_attention: bool = False, dtype=ms.float32):
        super().__init__(in_channels, prev_output_channel, out_channels, temb_channels, num_layers, resnet_eps,
                         resnet_time_scale_shift, resnet_groups, add_upsample, dtype)
        self.attentions = _transformers(num_layers, out_channels, num_attention_heads, transformer_layers_per_block,
                                        cross_attention_dim, resnet_groups, use_linear_projection,
                                        only_cross_attention, dtype)

    def _attend(self, i: int, x: Tensor, context: Tensor) -> Tensor:
        return self.attentions[i](x, context)


class UNetMidBlock2DCrossAttn(nn.Cell):
    """resnet, then (transformer, resnet) num_layers times."""

    def __init__(self, in_channels: int, temb_channels: int, num_layers: int = 1, transformer_layers_per_block=1,
                 num_attention_heads: int = 1, cross_attention_dim: int = 1280, resnet_eps: float = 1e-6,
                 resnet_time_scale_shift: str = "default", resnet_groups: int = 32, output_scale_factor: float = 1.0,
                 use_linear_projection: bool = False, dtype=ms.float32):
        super().__init__()
        self.resnets = nn.CellList([
            ResnetBlock2D(in_channels, in_channels, temb_channels, resnet_groups, eps=resnet_eps,
                          time_embedding_norm=resnet_time_scale_shift, output_scale_factor=output_scale_factor,
                          dtype=dtype)
            for _ in range(num_layers + 1)])
        self.attentions = _transformers(num_layers, in_channels, num_attention_heads, transformer_layers_per_block,
                                        cross_attention_dim, resnet_groups, use_linear_projection, False,
                                        dtype)

    def construct(self, x: Float[Tensor, "b c h w"], temb: Float[Tensor, "b t"],
                  context: Float[Tensor, "b m d"] = None) -> Float[Tensor, "b c h w"]:
        x = self.resnets[0](x, temb)
        for i in range(len(self.attentions)):
            x = self.resnets[i + 1](self.attentions[i](x, context), temb)
        return x
