"""The simple-cross-attention UNet blocks of unCLIP, Kandinsky 2.x and DeepFloyd IF (diffusers' unet_2d_blocks).

Resnet-resampled down / up blocks (ResnetDownsampleBlock2D / ResnetUpsampleBlock2D) and their variants with an
AddedKVAttention after each resnet (SimpleCrossAttnDownBlock2D / SimpleCrossAttnUpBlock2D), plus the mid block
UNetMidBlock2DSimpleCrossAttn. Calls follow `unet_2d_blocks` (down: (x, temb, context, extra, mask) -> (x, skips);
up: (x, skips, temb, context, upsample_size, mask) -> x); `mask` is an additive bias over the context tokens.
"""
import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .. import ops
from .layers import GroupNorm, Linear
from .resnet import DownResnetBlock2D, ResnetBlock2D, UpResnetBlock2D


class AddedKVAttention(nn.Cell):
    """Self-attention over a feature map whose keys / values are prefixed by projections of the context
    (`add_k_proj`, `add_v_proj`; diffusers' Attention with AttnAddedKVProcessor), with a residual.

    only_cross_attention drops the feature map's own keys (`to_k`, `to_v`); cross_attention_norm "group_norm"
    normalises the context first (`norm_cross`, 32 groups, as IF). The mask covers the context tokens only.
    """

    def __init__(self, query_dim: int, heads: int, dim_head: int, added_kv_proj_dim: int, norm_num_groups: int,
                 only_cross_attention: bool = False, cross_attention_norm: str = None, dtype=ms.float32):
        super().__init__()
        if cross_attention_norm not in (None, "group_norm"):
            raise ValueError(f"AddedKVAttention: cross_attention_norm {cross_attention_norm!r} is not supported "
                             "(None or 'group_norm')")
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.only_cross_attention = only_cross_attention
        self.group_norm = GroupNorm(norm_num_groups, query_dim, eps=1e-5, dtype=dtype)
        self.norm_cross = None
        if cross_attention_norm == "group_norm":
            self.norm_cross = GroupNorm(32, added_kv_proj_dim, eps=1e-5, dtype=dtype)
        self.to_q = Linear(query_dim, inner, dtype=dtype)
        self.to_k = self.to_v = None
        if not only_cross_attention:
            self.to_k = Linear(query_dim, inner, dtype=dtype)
            self.to_v = Linear(query_dim, inner, dtype=dtype)
        self.add_k_proj = Linear(added_kv_proj_dim, inner, dtype=dtype)
        self.add_v_proj = Linear(added_kv_proj_dim, inner, dtype=dtype)
        self.to_out = nn.CellList([Linear(inner, query_dim, dtype=dtype)])

    def _heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.heads, -1).swapaxes(1, 2)

    def construct(self, x: Float[Tensor, "b c h w"], context: Float[Tensor, "b m d"] = None,
                  mask: Float[Tensor, "b 1 m"] = None) -> Float[Tensor, "b c h w"]:
        shape = x.shape
        b, c = shape[0], shape[1]
        tokens = x.reshape(b, c, -1).swapaxes(1, 2)
        if context is None:
            context = tokens
        elif self.norm_cross is not None:
            context = self.norm_cross(context.swapaxes(1, 2)).swapaxes(1, 2)
        h = self.group_norm(tokens.swapaxes(1, 2)).swapaxes(1, 2)
        q = self._heads(self.to_q(h))
        k = self._heads(self.add_k_proj(context))
        v = self._heads(self.add_v_proj(context))
        if not self.only_cross_attention:
            k = mops.cat((k, self._heads(self.to_k(h))), axis=2)
            v = mops.cat((v, self._heads(self.to_v(h))), axis=2)
        if mask is not None:
            mask = mask.astype(q.dtype).reshape(b, 1, 1, -1)
            if mask.shape[-1] != k.shape[2]:
                mask = ops.pad(mask, (0, k.shape[2] - mask.shape[-1]))
        out = ops.attention(q, k, v, mask=mask, scale=self.scale)
        out = self.to_out[0](out.swapaxes(1, 2).reshape(b, -1, self.heads * out.shape[-1]))
        return out.swapaxes(1, 2).reshape(shape) + x


def _resnet(in_channels: int, out_channels: int, temb_channels: int, groups: int, eps: float, shift: str,
            skip_time_act: bool, output_scale_factor: float, dtype, act_fn: str = "silu",
            cls=ResnetBlock2D) -> ResnetBlock2D:
    return cls(in_channels, out_channels, temb_channels, groups, eps=eps, time_embedding_norm=shift,
               output_scale_factor=output_scale_factor, skip_time_act=skip_time_act, dtype=dtype, act_fn=act_fn)


def _added_kv_attentions(num_layers: int, channels: int, head_dim: int, cross_attention_dim: int, groups: int,
                         only_cross_attention: bool, cross_attention_norm: str, dtype) -> nn.CellList:
    return nn.CellList([
        AddedKVAttention(channels, channels // head_dim, head_dim, cross_attention_dim, groups,
                         only_cross_attention, cross_attention_norm, dtype=dtype)
        for _ in range(num_layers)])


class ResnetDownsampleBlock2D(nn.Cell):
    """num_layers resnets, then a downsampling resnet (2x2 average pool inside); every output is a skip."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int = 1,
                 resnet_eps: float = 1e-6, resnet_time_scale_shift: str = "default", resnet_groups: int = 32,
                 output_scale_factor: float = 1.0, add_downsample: bool = True, skip_time_act: bool = False,
                 dtype=ms.float32, resnet_act_fn: str = "silu"):
        super().__init__()
        args = (temb_channels, resnet_groups, resnet_eps, resnet_time_scale_shift, skip_time_act,
                output_scale_factor, dtype, resnet_act_fn)
        self.resnets = nn.CellList([_resnet(in_channels if i == 0 else out_channels, out_channels, *args)
                                    for i in range(num_layers)])
        self.downsamplers = None
        if add_downsample:
            self.downsamplers = nn.CellList([_resnet(out_channels, out_channels, *args, cls=DownResnetBlock2D)])

    def _attend(self, i: int, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        return x

    def construct(self, x: Float[Tensor, "b c h w"], temb: Float[Tensor, "b t"],
                  context: Float[Tensor, "b m d"] = None, additional_residual: Tensor = None,
                  mask: Float[Tensor, "b 1 m"] = None):
        if additional_residual is not None:
            raise ValueError(f"{type(self).__name__}: T2I-Adapter features are not supported here")
        skips = ()
        for i in range(len(self.resnets)):
            x = self._attend(i, self.resnets[i](x, temb), context, mask)
            skips = skips + (x,)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x, temb)
            skips = skips + (x,)
        return x, skips


class SimpleCrossAttnDownBlock2D(ResnetDownsampleBlock2D):
    """ResnetDownsampleBlock2D with an AddedKVAttention after each resnet (heads = out_channels // head dim)."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int = 1,
                 resnet_eps: float = 1e-6, resnet_time_scale_shift: str = "default", resnet_groups: int = 32,
                 attention_head_dim: int = 1, cross_attention_dim: int = 1280, output_scale_factor: float = 1.0,
                 add_downsample: bool = True, skip_time_act: bool = False, only_cross_attention: bool = False,
                 cross_attention_norm: str = None, dtype=ms.float32, resnet_act_fn: str = "silu"):
        super().__init__(in_channels, out_channels, temb_channels, num_layers, resnet_eps, resnet_time_scale_shift,
                         resnet_groups, output_scale_factor, add_downsample, skip_time_act, dtype, resnet_act_fn)
        self.attentions = _added_kv_attentions(num_layers, out_channels, attention_head_dim, cross_attention_dim,
                                               resnet_groups, only_cross_attention, cross_attention_norm, dtype)

    def _attend(self, i: int, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        return self.attentions[i](x, context, mask)


class ResnetUpsampleBlock2D(nn.Cell):
    """num_layers resnets, each fed the concatenation with one skip (last first), then an upsampling resnet."""

    def __init__(self, in_channels: int, prev_output_channel: int, out_channels: int, temb_channels: int,
                 num_layers: int = 1, resnet_eps: float = 1e-6, resnet_time_scale_shift: str = "default",
                 resnet_groups: int = 32, output_scale_factor: float = 1.0, add_upsample: bool = True,
                 skip_time_act: bool = False, dtype=ms.float32, resnet_act_fn: str = "silu"):
        super().__init__()
        args = (temb_channels, resnet_groups, resnet_eps, resnet_time_scale_shift, skip_time_act,
                output_scale_factor, dtype, resnet_act_fn)
        resnets = []
        for i in range(num_layers):
            skip_channels = in_channels if i == num_layers - 1 else out_channels
            resnet_in = prev_output_channel if i == 0 else out_channels
            resnets.append(_resnet(resnet_in + skip_channels, out_channels, *args))
        self.resnets = nn.CellList(resnets)
        self.upsamplers = None
        if add_upsample:
            self.upsamplers = nn.CellList([_resnet(out_channels, out_channels, *args, cls=UpResnetBlock2D)])

    def _attend(self, i: int, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        return x

    def construct(self, x: Float[Tensor, "b c h w"], skips: tuple, temb: Float[Tensor, "b t"],
                  context: Float[Tensor, "b m d"] = None, upsample_size=None,
                  mask: Float[Tensor, "b 1 m"] = None) -> Float[Tensor, "b o h2 w2"]:
        """upsample_size is ignored: the upsampling resnet always doubles (as diffusers')."""
        n = len(self.resnets)
        for i in range(n):
            x = mops.cat((x, skips[n - 1 - i]), axis=1)
            x = self._attend(i, self.resnets[i](x, temb), context, mask)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, temb)
        return x


class SimpleCrossAttnUpBlock2D(ResnetUpsampleBlock2D):
    """ResnetUpsampleBlock2D with an AddedKVAttention after each resnet."""

    def __init__(self, in_channels: int, prev_output_channel: int, out_channels: int, temb_channels: int,
                 num_layers: int = 1, resnet_eps: float = 1e-6, resnet_time_scale_shift: str = "default",
                 resnet_groups: int = 32, attention_head_dim: int = 1, cross_attention_dim: int = 1280,
                 output_scale_factor: float = 1.0, add_upsample: bool = True, skip_time_act: bool = False,
                 only_cross_attention: bool = False, cross_attention_norm: str = None, dtype=ms.float32,
                 resnet_act_fn: str = "silu"):
        super().__init__(in_channels, prev_output_channel, out_channels, temb_channels, num_layers, resnet_eps,
                         resnet_time_scale_shift, resnet_groups, output_scale_factor, add_upsample, skip_time_act,
                         dtype, resnet_act_fn)
        self.attentions = _added_kv_attentions(num_layers, out_channels, attention_head_dim, cross_attention_dim,
                                               resnet_groups, only_cross_attention, cross_attention_norm, dtype)

    def _attend(self, i: int, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        return self.attentions[i](x, context, mask)


class UNetMidBlock2DSimpleCrossAttn(nn.Cell):
    """resnet, then (AddedKVAttention, resnet) num_layers times."""

    def __init__(self, in_channels: int, temb_channels: int, num_layers: int = 1, resnet_eps: float = 1e-6,
                 resnet_time_scale_shift: str = "default", resnet_groups: int = 32, attention_head_dim: int = 1,
                 output_scale_factor: float = 1.0, cross_attention_dim: int = 1280, skip_time_act: bool = False,
                 only_cross_attention: bool = False, cross_attention_norm: str = None, dtype=ms.float32,
                 resnet_act_fn: str = "silu"):
        super().__init__()
        args = (temb_channels, resnet_groups, resnet_eps, resnet_time_scale_shift, skip_time_act,
                output_scale_factor, dtype, resnet_act_fn)
        self.resnets = nn.CellList([_resnet(in_channels, in_channels, *args) for _ in range(num_layers + 1)])
        self.attentions = _added_kv_attentions(num_layers, in_channels, attention_head_dim, cross_attention_dim,
                                               resnet_groups, only_cross_attention, cross_attention_norm, dtype)

    def construct(self, x: Float[Tensor, "b c h w"], temb: Float[Tensor, "b t"],
                  context: Float[Tensor, "b m d"] = None, mask: Float[Tensor, "b 1 m"] = None):
        x = self.resnets[0](x, temb)
        for i in range(len(self.attentions)):
            x = self.resnets[i + 1](self.attentions[i](x, context, mask), temb)
        return x
