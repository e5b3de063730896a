"""The skip-sample blocks of diffusers' NCSN++-style UNet2DModel (Song et al. 2021, score SDE).

Besides the usual hidden states and skips, each block carries a 3-channel `skip_sample` image: the down
path FIR-downsamples the input image and adds its 1x1 `skip_conv` projection to the hidden state; the up
path builds an output image progressively (GroupNorm-SiLU-`skip_conv` per level, FIR-upsampled between
levels). Resnets use FIR up/down resampling and a sqrt(2) output scale. Group counts follow diffusers
exactly, including AttnSkipUpBlock2D's `min(in + skip // 4, 32)` precedence.

Down blocks: (x, temb, skip_sample) -> (x, skips, skip_sample); up blocks: (x, skips, temb, skip_sample)
-> (x, skip_sample), where skip_sample may be None (start of the up path, or nothing produced).
"""
import math

import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .. import ops
from .layers import Conv2d, GroupNorm
from .resnet import ResnetBlock2D
from .unet_2d_model_blocks import (FirDownResnetBlock2D, FirDownsample2D, FirUpResnetBlock2D, FirUpsample2D,
                                   _spatial_attentions)

SQRT2 = math.sqrt(2.0)


def _groups(channels: int) -> int:
    return min(channels // 4, 32)


class SkipDownBlock2D(nn.Cell):
    """Resnets, then (if add_downsample) a FIR-down resnet plus the skip image, FIR-downsampled and 1x1-projected."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int = 1,
                 resnet_eps: float = 1e-6, resnet_time_scale_shift: str = "default",
                 output_scale_factor: float = SQRT2, add_downsample: bool = True, dtype=ms.float32):
        super().__init__()
        self.resnets = nn.CellList([
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels,
                          groups=_groups(in_channels if i == 0 else out_channels), groups_out=_groups(out_channels),
                          eps=resnet_eps, time_embedding_norm=resnet_time_scale_shift,
                          output_scale_factor=output_scale_factor, dtype=dtype)
            for i in range(num_layers)])
        self.resnet_down = self.downsamplers = self.skip_conv = None
        if add_downsample:
            self.resnet_down = FirDownResnetBlock2D(out_channels, out_channels, temb_channels,
                                                    groups=_groups(out_channels), eps=resnet_eps,
                                                    time_embedding_norm=resnet_time_scale_shift,
                                                    output_scale_factor=output_scale_factor, use_in_shortcut=True,
                                                    dtype=dtype)
            self.downsamplers = nn.CellList([FirDownsample2D(out_channels, out_channels, dtype=dtype)])
            self.skip_conv = Conv2d(3, out_channels, 1, dtype=dtype)

    def _attend(self, i: int, x: Tensor) -> Tensor:
        return x

    def construct(self, x: Float[Tensor, "b c h w"], temb: Float[Tensor, "b t"],
                  skip_sample: Float[Tensor, "b 3 h w"]):
        skips = ()
        for i in range(len(self.resnets)):
            x = self._attend(i, self.resnets[i](x, temb))
            skips = skips + (x,)
        if self.resnet_down is not None:
            x = self.resnet_down(x, temb)
            skip_sample = self.downsamplers[0](skip_sample)
            x = self.skip_conv(skip_sample) + x
            skips = skips + (x,)
        return x, skips, skip_sample


class AttnSkipDownBlock2D(SkipDownBlock2D):
    """SkipDownBlock2D with a group-normed (32 groups) residual self-attention after each resnet."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int = 1,
                 resnet_eps: float = 1e-6, resnet_time_scale_shift: str = "default", attention_head_dim: int = 1,
                 output_scale_factor: float = SQRT2, add_downsample: bool = True, dtype=ms.float32):
        super().__init__(in_channels, out_channels, temb_channels, num_layers, resnet_eps, resnet_time_scale_shift,
                         output_scale_factor, add_downsample, dtype)
        self.attentions = _spatial_attentions(num_layers, out_channels, attention_head_dim or out_channels, 32,
                                              resnet_eps, dtype, output_scale_factor)

    def _attend(self, i: int, x: Tensor) -> Tensor:
        return self.attentions[i](x)


class SkipUpBlock2D(nn.Cell):
    """Resnets over concatenated skips; the skip image is FIR-upsampled and (if add_upsample) gains this level's
    GroupNorm-SiLU-3x3 `skip_conv` projection before the FIR-up resnet."""

    def __init__(self, in_channels: int, prev_output_channel: int, out_channels: int, temb_channels: int,
                 num_layers: int = 1, resnet_eps: float = 1e-6, resnet_time_scale_shift: str = "default",
                 output_scale_factor: float = SQRT2, add_upsample: bool = True, dtype=ms.float32):
        super().__init__()
        resnets = []
        for i in range(num_layers):
            skip_ch = in_channels if i == num_layers - 1 else out_channels
            res_in = prev_output_channel if i == 0 else out_channels
            resnets.append(ResnetBlock2D(res_in + skip_ch, out_channels, temb_channels,
                                         groups=self._resnet_groups(res_in, skip_ch),
                                         groups_out=_groups(out_channels), eps=resnet_eps,
                                         time_embedding_norm=resnet_time_scale_shift,
                                         output_scale_factor=output_scale_factor, dtype=dtype))
        self.resnets = nn.CellList(resnets)
        self.upsampler = FirUpsample2D(in_channels, out_channels, dtype=dtype)
        self.resnet_up = self.skip_conv = self.skip_norm = None
        if add_upsample:
            g = _groups(out_channels)
            self.resnet_up = FirUpResnetBlock2D(out_channels, out_channels, temb_channels, groups=g, groups_out=g,
                                                eps=resnet_eps, time_embedding_norm=resnet_time_scale_shift,
                                                output_scale_factor=output_scale_factor, use_in_shortcut=True,
                                                dtype=dtype)
            self.skip_conv = Conv2d(out_channels, 3, 3, padding=1, dtype=dtype)
            self.skip_norm = GroupNorm(g, out_channels, eps=resnet_eps, dtype=dtype)

    @staticmethod
    def _resnet_groups(res_in: int, skip_ch: int) -> int:
        return _groups(res_in + skip_ch)

    def _attend(self, x: Tensor) -> Tensor:
        return x

    def construct(self, x: Float[Tensor, "b c h w"], skips: tuple, temb: Float[Tensor, "b t"],
                  skip_sample: Float[Tensor, "b 3 h w"] = None):
        for i in range(len(self.resnets)):
            x = mops.cat((x, skips[len(skips) - 1 - i]), axis=1)
            x = self.resnets[i](x, temb)
        x = self._attend(x)
        if skip_sample is not None:
            skip_sample = self.upsampler(skip_sample)
        if self.resnet_up is not None:
            projected = self.skip_conv(ops.silu(self.skip_norm(x)))
            skip_sample = projected if skip_sample is None else skip_sample + projected
            x = self.resnet_up(x, temb)
        return x, skip_sample


class AttnSkipUpBlock2D(SkipUpBlock2D):
    """SkipUpBlock2D with one group-normed (32 groups) residual self-attention after the resnets."""

    def __init__(self, in_channels: int, prev_output_channel: int, out_channels: int, temb_channels: int,
                 num_layers: int = 1, resnet_eps: float = 1e-6, resnet_time_scale_shift: str = "default",
                 attention_head_dim: int = 1, output_scale_factor: float = SQRT2, add_upsample: bool = True,
                 dtype=ms.float32):
        super().__init__(in_channels, prev_output_channel, out_channels, temb_channels, num_layers, resnet_eps,
                         resnet_time_scale_shift, output_scale_factor, add_upsample, dtype)
        self.attentions = _spatial_attentions(1, out_channels, attention_head_dim or out_channels, 32, resnet_eps,
                                              dtype, output_scale_factor)

    @staticmethod
    def _resnet_groups(res_in: int, skip_ch: int) -> int:
        return min(res_in + skip_ch // 4, 32)  # diffusers' operator precedence, kept for weight/numeric parity

    def _attend(self, x: Tensor) -> Tensor:
        return self.attentions[0](x)
