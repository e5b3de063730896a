"""The K-diffusion UNet blocks of stabilityai/sd-x2-latent-upscaler (diffusers' KDownBlock2D, KCrossAttnDownBlock2D,
KUpBlock2D, KCrossAttnUpBlock2D, KAttentionBlock, ResnetBlockCondNorm2D with AdaGroupNorm, KDownsample2D /
KUpsample2D), after Crowson's k-diffusion image UNet.

Every norm is a GroupNorm without affine whose scale and shift come from the time embedding (AdaGroupNorm); the
resampling is a fixed [1, 3, 3, 1] / 8 binomial filter with reflect padding. Down blocks return their skips as a
tuple whose entries may be None (KCrossAttnDownBlock2D without downsampler), up blocks read the last one only.
"""
import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .. import ops
from .attention import Attention
from .layers import Conv2d, LayerNorm, Linear

# Kernels

_BINOMIAL = np.array([1 / 8, 3 / 8, 3 / 8, 1 / 8], np.float32)


def _depthwise_filter(x: Tensor, scale: float) -> Tensor:
    """The [c, 1, 4, 4] weight of the separable binomial filter (times scale^2) for x's channels."""
    k = _BINOMIAL * np.float32(scale)
    k2 = np.outer(k, k).astype(np.float32)
    return Tensor(np.broadcast_to(k2, (x.shape[1], 1, 4, 4)).copy()).astype(x.dtype)


def k_downsample(x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b c h2 w2"]:
    """diffusers' KDownsample2D: reflect pad 1, binomial 4x4 filter per channel, stride 2."""
    x = mops.pad(x, (1, 1, 1, 1), mode="reflect")
    return ops.conv2d(x, _depthwise_filter(x, 1.0), None, stride=2, groups=x.shape[1])


def k_upsample(x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b c h2 w2"]:
    """diffusers' KUpsample2D: reflect pad 1, then the transposed stride-2 conv (padding 3) with the binomial filter
    times 2 per axis, written as zero insertion and a plain conv (the filter is symmetric)."""
    x = mops.pad(x, (1, 1, 1, 1), mode="reflect")
    b, c, h, w = x.shape
    z = mops.zeros_like(x)
    x = mops.stack((mops.stack((x, z), axis=-1), mops.stack((z, z), axis=-1)), axis=3)  # b c h 2 w 2
    x = x.reshape(b, c, 2 * h, 2 * w)[:, :, :2 * h - 1, :2 * w - 1]
    return ops.conv2d(x, _depthwise_filter(x, 2.0), None, stride=1, groups=c)


# Layers

class AdaGroupNorm(nn.Cell):
    """GroupNorm (no affine) with scale / shift from the embedding: x_norm * (1 + scale) + shift."""

    def __init__(self, embedding_dim: int, out_dim: int, num_groups: int, eps: float = 1e-5, dtype=ms.float32):
        super().__init__()
        self.num_groups, self.eps = num_groups, eps
        self.linear = Linear(embedding_dim, out_dim * 2, dtype=dtype)

    def construct(self, x: Float[Tensor, "b c h w"], emb: Float[Tensor, "b e"]) -> Float[Tensor, "b c h w"]:
        emb = self.linear(emb)
        c = emb.shape[1] // 2
        scale, shift = emb[:, :c].reshape(-1, c, 1, 1), emb[:, c:].reshape(-1, c, 1, 1)
        return ops.group_norm(x, self.num_groups, None, None, self.eps) * (1 + scale) + shift


class ResnetBlockCondNorm2D(nn.Cell):
    """AdaGroupNorm -> GELU -> conv3x3, twice, plus a (bias-free 1x1) shortcut (diffusers' ResnetBlockCondNorm2D with
    time_embedding_norm "ada_group", as the K blocks build it)."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, groups: int, groups_out: int,
                 eps: float = 1e-5, conv_2d_out_channels: int = None, act_fn: str = "gelu", dtype=ms.float32):
        super().__init__()
        conv_out = conv_2d_out_channels or out_channels
        self.act_fn = act_fn
        self.norm1 = AdaGroupNorm(temb_channels, in_channels, groups, eps, dtype=dtype)
        self.conv1 = Conv2d(in_channels, out_channels, 3, padding=1, dtype=dtype)
        self.norm2 = AdaGroupNorm(temb_channels, out_channels, groups_out, eps, dtype=dtype)
        self.conv2 = Conv2d(out_channels, conv_out, 3, padding=1, dtype=dtype)
        self.conv_shortcut = Conv2d(in_channels, conv_out, 1, bias=False, dtype=dtype) \
            if in_channels != conv_out else None

    def construct(self, x: Float[Tensor, "b c h w"], temb: Float[Tensor, "b t"]) -> Float[Tensor, "b o h w"]:
        h = self.conv1(ops.activate(self.norm1(x, temb), self.act_fn))
        h = self.conv2(ops.activate(self.norm2(h, temb), self.act_fn))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class CrossNormAttention(Attention):
    """Attention whose context is layer-normed first (diffusers' Attention(cross_attention_norm="layer_norm"))."""

    def __init__(self, query_dim: int, cross_attention_dim: int, heads: int, dim_head: int, dtype=ms.float32):
        super().__init__(query_dim, cross_attention_dim, heads, dim_head, bias=True, dtype=dtype)
        self.norm_cross = LayerNorm(cross_attention_dim, dtype=dtype)

    def construct(self, x: Float[Tensor, "b n c"], context: Float[Tensor, "b m d"] = None,
                  mask=None) -> Float[Tensor, "b n c"]:
        return super().construct(x, self.norm_cross(context), mask)


def _tokens(x: Tensor) -> Tensor:
    b, c = x.shape[0], x.shape[1]
    return x.reshape(b, c, -1).swapaxes(1, 2)


def _map(x: Tensor, like: Tensor) -> Tensor:
    return x.swapaxes(1, 2).reshape(like.shape)


class KAttentionBlock(nn.Cell):
    """Optional self-attention (norm1 / attn1), then cross-attention (norm2 / attn2), each after an AdaGroupNorm and
    added back; no feed-forward (diffusers' KAttentionBlock)."""

    def __init__(self, dim: int, num_attention_heads: int, attention_head_dim: int, cross_attention_dim: int,
                 temb_channels: int, add_self_attention: bool = False, group_size: int = 32, dtype=ms.float32):
        super().__init__()
        groups = max(1, dim // group_size)
        self.norm1 = self.attn1 = None
        if add_self_attention:
            self.norm1 = AdaGroupNorm(temb_channels, dim, groups, dtype=dtype)
            self.attn1 = Attention(dim, None, num_attention_heads, attention_head_dim, bias=True, dtype=dtype)
        self.norm2 = AdaGroupNorm(temb_channels, dim, groups, dtype=dtype)
        self.attn2 = CrossNormAttention(dim, cross_attention_dim, num_attention_heads, attention_head_dim,
                                        dtype=dtype)

    def construct(self, x: Float[Tensor, "b c h w"], context: Float[Tensor, "b m d"],
                  emb: Float[Tensor, "b t"]) -> Float[Tensor, "b c h w"]:
        if self.attn1 is not None:
            x = _map(self.attn1(_tokens(self.norm1(x, emb))), x) + x
        return _map(self.attn2(_tokens(self.norm2(x, emb)), context), x) + x


def _resnet(in_ch: int, out_ch: int, temb: int, eps: float, act_fn: str, dtype, conv_2d_out: int = None,
            groups_out_channels: int = None, group_size: int = 32) -> ResnetBlockCondNorm2D:
    groups_out = (groups_out_channels or out_ch) // group_size
    return ResnetBlockCondNorm2D(in_ch, out_ch, temb, in_ch // group_size, groups_out, eps, conv_2d_out, act_fn,
                                 dtype=dtype)


class KDownBlock2D(nn.Cell):
    """num_layers K resnets (each output a skip), then an optional KDownsample2D."""

    has_cross_attention = False

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int = 4,
                 resnet_eps: float = 1e-5, resnet_act_fn: str = "gelu", add_downsample: bool = False,
                 dtype=ms.float32):
        super().__init__()
        self.resnets = nn.CellList([_resnet(in_channels if i == 0 else out_channels, out_channels, temb_channels,
                                            resnet_eps, resnet_act_fn, dtype) for i in range(num_layers)])
        self.add_downsample = add_downsample

    def construct(self, x: Float[Tensor, "b c h w"], temb: Float[Tensor, "b t"], context=None):
        skips = ()
        for resnet in self.resnets:
            x = resnet(x, temb)
            skips = skips + (x,)
        if self.add_downsample:
            x = k_downsample(x)
        return x, skips


class KCrossAttnDownBlock2D(nn.Cell):
    """(K resnet, KAttentionBlock) num_layers times, then an optional KDownsample2D; without one (the last block)
    the skips are None and self-attention is on."""

    has_cross_attention = True

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, cross_attention_dim: int,
                 num_layers: int = 4, attention_head_dim: int = 64, add_downsample: bool = True,
                 resnet_eps: float = 1e-5, resnet_act_fn: str = "gelu", dtype=ms.float32):
        super().__init__()
        self.resnets = nn.CellList([_resnet(in_channels if i == 0 else out_channels, out_channels, temb_channels,
                                            resnet_eps, resnet_act_fn, dtype) for i in range(num_layers)])
        self.attentions = nn.CellList([
            KAttentionBlock(out_channels, out_channels // attention_head_dim, attention_head_dim, cross_attention_dim,
                            temb_channels, add_self_attention=not add_downsample, dtype=dtype)
            for _ in range(num_layers)])
        self.add_downsample = add_downsample

    def construct(self, x: Float[Tensor, "b c h w"], temb: Float[Tensor, "b t"], context: Float[Tensor, "b m d"]):
        skips = ()
        for i in range(len(self.resnets)):
            x = self.attentions[i](self.resnets[i](x, temb), context, temb)
            skips = skips + ((x,) if self.add_downsample else (None,))
        if self.add_downsample:
            x = k_downsample(x)
        return x, skips


class KUpBlock2D(nn.Cell):
    """Concatenate the last skip (if any), num_layers - 1 K resnets (the last to in_channels), optional
    KUpsample2D."""

    has_cross_attention = False

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int = 5,
                 resnet_eps: float = 1e-5, resnet_act_fn: str = "gelu", add_upsample: bool = True, dtype=ms.float32):
        super().__init__()
        n = num_layers - 1
        self.resnets = nn.CellList([
            _resnet(2 * out_channels if i == 0 else out_channels, in_channels if i == n - 1 else out_channels,
                    temb_channels, resnet_eps, resnet_act_fn, dtype, groups_out_channels=out_channels)
            for i in range(n)])
        self.add_upsample = add_upsample

    def _layer(self, i: int, x: Tensor, temb: Tensor, context) -> Tensor:
        return self.resnets[i](x, temb)

    def construct(self, x: Float[Tensor, "b c h w"], skips: tuple, temb: Float[Tensor, "b t"], context=None):
        if skips[-1] is not None:
            x = mops.cat((x, skips[-1]), axis=1)
        for i in range(len(self.resnets)):
            x = self._layer(i, x, temb, context)
        if self.add_upsample:
            x = k_upsample(x)
        return x


class KCrossAttnUpBlock2D(KUpBlock2D):
    """KUpBlock2D with a KAttentionBlock after each resnet; the first block (in == out == temb channels) takes no
    skip channels and has self-attention; a middle block (in != out) widens its last resnet's conv2 to in."""

    has_cross_attention = True

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int = 4,
                 attention_head_dim: int = 1, cross_attention_dim: int = 768, resnet_eps: float = 1e-5,
                 resnet_act_fn: str = "gelu", add_upsample: bool = True, dtype=ms.float32):
        nn.Cell.__init__(self)
        first = in_channels == out_channels == temb_channels
        middle = in_channels != out_channels
        k_in, k_out, n = out_channels if first else 2 * out_channels, in_channels, num_layers - 1
        self.resnets = nn.CellList([
            _resnet(k_in if i == 0 else out_channels, out_channels, temb_channels, resnet_eps, resnet_act_fn, dtype,
                    conv_2d_out=k_out if middle and i == n - 1 else None) for i in range(n)])
        dims = [k_out if i == n - 1 else out_channels for i in range(n)]
        self.attentions = nn.CellList([
            KAttentionBlock(d, d // attention_head_dim, attention_head_dim, cross_attention_dim, temb_channels,
                            add_self_attention=first, dtype=dtype) for d in dims])
        self.add_upsample = add_upsample

    def _layer(self, i: int, x: Tensor, temb: Tensor, context) -> Tensor:
        return self.attentions[i](self.resnets[i](x, temb), context, temb)
