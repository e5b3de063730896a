"""AnimateDiff's motion blocks: SD's 2D down / mid / up blocks with a motion module (a TransformerTemporalModel with
sinusoidal positions, diffusers' AnimateDiffTransformer3D) after each resnet (+ spatial transformer).

Down blocks are called as block(x, temb, context, num_frames) -> (x, skips); up blocks as
block(x, skips, temb, context, num_frames, upsample_size) -> x; plain blocks ignore `context`.
"""
import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .resampling import Downsample2D, Upsample2D
from .resnet import ResnetBlock2D
from .temporal import TransformerTemporalModel
from .unet_2d_blocks import _per_layer, _transformers


def motion_modules(num_layers: int, channels: int, heads: int, depth, groups: int, max_seq_length: int,
                   dtype) -> nn.CellList:
    """num_layers motion modules of `channels` (heads of channels // heads), depth transformer layers each."""
    depths = _per_layer(depth, num_layers)
    return nn.CellList([
        TransformerTemporalModel(heads, channels // heads, channels, depths[i], groups,
                                 positional_embeddings="sinusoidal", num_positional_embeddings=max_seq_length,
                                 dtype=dtype)
        for i in range(num_layers)])


class DownBlockMotion(nn.Cell):
    """num_layers (resnet, motion module) pairs, then an optional stride-2 conv; every output is a skip."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int = 1,
                 resnet_eps: float = 1e-6, resnet_groups: int = 32, add_downsample: bool = True,
                 downsample_padding: int = 1, temporal_num_attention_heads: int = 1, temporal_max_seq_length: int = 32,
                 temporal_transformer_layers_per_block=1, dtype=ms.float32):
        super().__init__()
        self.resnets = nn.CellList([
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels, resnet_groups,
                          eps=resnet_eps, dtype=dtype)
            for i in range(num_layers)])
        self.motion_modules = motion_modules(num_layers, out_channels, temporal_num_attention_heads,
                                             temporal_transformer_layers_per_block, resnet_groups,
                                             temporal_max_seq_length, dtype)
        self.downsamplers = None
        if add_downsample:
            self.downsamplers = nn.CellList([Downsample2D(out_channels, True, out_channels, downsample_padding,
                                                          dtype=dtype)])

    def _attend(self, i: int, x: Tensor, context: Tensor) -> Tensor:
        return x

    def construct(self, x: Float[Tensor, "bf c h w"], temb: Float[Tensor, "bf t"], context: Float[Tensor, "bf m d"],
                  num_frames: int) -> tuple:
        skips = ()
        for i in range(len(self.resnets)):
            x = self._attend(i, self.resnets[i](x, temb), context)
            x = self.motion_modules[i](x, num_frames)
            skips = skips + (x,)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips = skips + (x,)
        return x, skips


class CrossAttnDownBlockMotion(DownBlockMotion):
    """DownBlockMotion with a Transformer2DModel between each resnet and its motion module."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int = 1,
                 transformer_layers_per_block=1, num_attention_heads: int = 1, cross_attention_dim: int = 1280,
                 resnet_eps: float = 1e-6, resnet_groups: int = 32, add_downsample: bool = True,
                 downsample_padding: int = 1, use_linear_projection: bool = False,
                 temporal_num_attention_heads: int = 1, temporal_max_seq_length: int = 32,
                 temporal_transformer_layers_per_block=1, dtype=ms.float32):
        super().__init__(in_channels, out_channels, temb_channels, num_layers, resnet_eps, resnet_groups,
                         add_downsample, downsample_padding, temporal_num_attention_heads, temporal_max_seq_length,
                         temporal_transformer_layers_per_block, dtype)
        self.attentions = _transformers(num_layers, out_channels, num_attention_heads, transformer_layers_per_block,
                                        cross_attention_dim, resnet_groups, use_linear_projection, False, dtype)

    def _attend(self, i: int, x: Tensor, context: Tensor) -> Tensor:
        return self.attentions[i](x, context)


class UpBlockMotion(nn.Cell):
    """num_layers (resnet on [x; skip], motion module) pairs, last skip first, then an optional upsampler."""

    def __init__(self, in_channels: int, prev_output_channel: int, out_channels: int, temb_channels: int,
                 num_layers: int = 1, resnet_eps: float = 1e-6, resnet_groups: int = 32, add_upsample: bool = True,
                 temporal_num_attention_heads: int = 1, temporal_max_seq_length: int = 32,
                 temporal_transformer_layers_per_block=1, dtype=ms.float32):
        super().__init__()
        resnets = []
        for i in range(num_layers):
            skip_channels = in_channels if i == num_layers - 1 else out_channels
            resnet_in = prev_output_channel if i == 0 else out_channels
            resnets.append(ResnetBlock2D(resnet_in + skip_channels, out_channels, temb_channels, resnet_groups,
                                         eps=resnet_eps, dtype=dtype))
        self.resnets = nn.CellList(resnets)
        self.motion_modules = motion_modules(num_layers, out_channels, temporal_num_attention_heads,
                                             temporal_transformer_layers_per_block, resnet_groups,
                                             temporal_max_seq_length, dtype)
        self.upsamplers = None
        if add_upsample:
            self.upsamplers = nn.CellList([Upsample2D(out_channels, True, out_channels, dtype=dtype)])

    def _attend(self, i: int, x: Tensor, context: Tensor) -> Tensor:
        return x

    def construct(self, x: Float[Tensor, "bf c h w"], skips: tuple, temb: Float[Tensor, "bf t"],
                  context: Float[Tensor, "bf m d"], num_frames: int, upsample_size=None) -> Float[Tensor, "bf o h2 w2"]:
        n = len(self.resnets)
        for i in range(n):
            x = mops.cat((x, skips[n - 1 - i]), axis=1)
            x = self.motion_modules[i](self._attend(i, self.resnets[i](x, temb), context), num_frames)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, upsample_size)
        return x


class CrossAttnUpBlockMotion(UpBlockMotion):
    """UpBlockMotion with a Transformer2DModel between each resnet and its motion module."""

    def __init__(self, in_channels: int, prev_output_channel: int, out_channels: int, temb_channels: int,
                 num_layers: int = 1, transformer_layers_per_block=1, num_attention_heads: int = 1,
                 cross_attention_dim: int = 1280, resnet_eps: float = 1e-6, resnet_groups: int = 32,
                 add_upsample: bool = True, use_linear_projection: bool = False, temporal_num_attention_heads: int = 1,
                 temporal_max_seq_length: int = 32, temporal_transformer_layers_per_block=1, dtype=ms.float32):
        super().__init__(in_channels, prev_output_channel, out_channels, temb_channels, num_layers, resnet_eps,
                         resnet_groups, add_upsample, temporal_num_attention_heads, temporal_max_seq_length,
                         temporal_transformer_layers_per_block, dtype)
        self.attentions = _transformers(num_layers, out_channels, num_attention_heads, transformer_layers_per_block,
                                        cross_attention_dim, resnet_groups, use_linear_projection, False, dtype)

    def _attend(self, i: int, x: Tensor, context: Tensor) -> Tensor:
        return self.attentions[i](x, context)


class UNetMidBlockCrossAttnMotion(nn.Cell):
    """resnet, then num_layers times (transformer, motion module, resnet)."""

    def __init__(self, in_channels: int, temb_channels: int, num_layers: int = 1, transformer_layers_per_block=1,
                 num_attention_heads: int = 1, cross_attention_dim: int = 1280, resnet_eps: float = 1e-6,
                 resnet_groups: int = 32, output_scale_factor: float = 1.0, use_linear_projection: bool = False,
                 temporal_num_attention_heads: int = 1, temporal_max_seq_length: int = 32,
                 temporal_transformer_layers_per_block=1, dtype=ms.float32):
        super().__init__()
        self.resnets = nn.CellList([
            ResnetBlock2D(in_channels, in_channels, temb_channels, resnet_groups, eps=resnet_eps,
                          output_scale_factor=output_scale_factor, dtype=dtype)
            for _ in range(num_layers + 1)])
        self.attentions = _transformers(num_layers, in_channels, num_attention_heads, transformer_layers_per_block,
                                        cross_attention_dim, resnet_groups, use_linear_projection, False, dtype)
        self.motion_modules = motion_modules(num_layers, in_channels, temporal_num_attention_heads,
                                             temporal_transformer_layers_per_block, resnet_groups,
                                             temporal_max_seq_length, dtype)

    def construct(self, x: Float[Tensor, "bf c h w"], temb: Float[Tensor, "bf t"], context: Float[Tensor, "bf m d"],
                  num_frames: int) -> Float[Tensor, "bf c h w"]:
        x = self.resnets[0](x, temb)
        for i in range(len(self.attentions)):
            x = self.motion_modules[i](self.attentions[i](x, context), num_frames)
            x = self.resnets[i + 1](x, temb)
        return x
