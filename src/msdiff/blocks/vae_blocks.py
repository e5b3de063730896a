"""The VAE's blocks: DownEncoderBlock2D, UpDecoderBlock2D and UNetMidBlock2D (resnets with spatial attention)."""
import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn

from .attention import Attention
from .resampling import Downsample2D, Upsample2D
from .resnet import ResnetBlock2D


class DownEncoderBlock2D(nn.Cell):
    """num_layers time-free resnets, then an optional stride-2 conv (diffusers pads right/bottom: padding 0)."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int = 1, resnet_eps: float = 1e-6,
                 resnet_groups: int = 32, add_downsample: bool = True, downsample_padding: int = 1,
                 dtype=ms.float32):
        super().__init__()
        self.resnets = nn.CellList([
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, None, resnet_groups,
                          eps=resnet_eps, dtype=dtype)
            for i in range(num_layers)])
        self.downsamplers = None
        if add_downsample:
            self.downsamplers = nn.CellList([Downsample2D(out_channels, True, out_channels, downsample_padding,
                                                          dtype=dtype)])

    def construct(self, x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b o h2 w2"]:
        for resnet in self.resnets:
            x = resnet(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        return x


class UpDecoderBlock2D(nn.Cell):
    """num_layers resnets (no skips), then an optional nearest-x2 + conv upsampler."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int = 1, resnet_eps: float = 1e-6,
                 resnet_groups: int = 32, add_upsample: bool = True, temb_channels: int = None, dtype=ms.float32):
        super().__init__()
        self.resnets = nn.CellList([
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels, resnet_groups,
                          eps=resnet_eps, dtype=dtype)
            for i in range(num_layers)])
        self.upsamplers = None
        if add_upsample:
            self.upsamplers = nn.CellList([Upsample2D(out_channels, True, out_channels, dtype=dtype)])

    def construct(self, x: Float[Tensor, "b c h w"], temb: Float[Tensor, "b t"] = None) -> Float[Tensor, "b o h2 w2"]:
        for resnet in self.resnets:
            x = resnet(x, temb)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class UNetMidBlock2D(nn.Cell):
    """resnet, then (residual self-attention, resnet) num_layers times; attention is optional.

    The attentions group-normalise over attn_groups; left None, diffusers' rule applies: resnet_groups
    with time_embedding_norm "default", no normalisation with "scale_shift".
    """

    def __init__(self, in_channels: int, temb_channels: int = None, num_layers: int = 1, resnet_eps: float = 1e-6,
                 resnet_groups: int = 32, add_attention: bool = True, attention_head_dim: int = None,
                 output_scale_factor: float = 1.0, resnet_time_scale_shift: str = "default", attn_groups: int = None,
                 dtype=ms.float32):
        super().__init__()
        head_dim = attention_head_dim or in_channels
        if attn_groups is None and resnet_time_scale_shift == "default":
            attn_groups = resnet_groups
        self.resnets = nn.CellList([
            ResnetBlock2D(in_channels, in_channels, temb_channels, resnet_groups, eps=resnet_eps,
                          time_embedding_norm=resnet_time_scale_shift, output_scale_factor=output_scale_factor,
                          dtype=dtype)
            for _ in range(num_layers + 1)])
        self.attentions = None
        if add_attention:
            self.attentions = nn.CellList([
                Attention(in_channels, heads=in_channels // head_dim, dim_head=head_dim, bias=True,
                          norm_num_groups=attn_groups, eps=resnet_eps, residual_connection=True,
                          rescale_output_factor=output_scale_factor, dtype=dtype)
                for _ in range(num_layers)])

    def construct(self, x: Float[Tensor, "b c h w"], temb: Float[Tensor, "b t"] = None) -> Float[Tensor, "b c h w"]:
        x = self.resnets[0](x, temb)
        for i in range(len(self.resnets) - 1):
            if self.attentions is not None:
                x = self.attentions[i](x)
            x = self.resnets[i + 1](x, temb)
        return x
