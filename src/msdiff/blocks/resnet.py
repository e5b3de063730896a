"""ResnetBlock2D: GroupNorm-SiLU-conv residual block with an optional time-embedding injection."""
import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn

from .. import ops
from .layers import Conv2d, GroupNorm, Linear
from .resampling import avg_pool_2x2


class ResnetBlock2D(nn.Cell):
    """diffusers' ResnetBlock2D (pre-norm, SiLU or the config's act_fn: "gelu" for DeepFloyd IF); dropout is an inference no-op and is not kept.

    time_embedding_norm "default" adds the projected embedding before norm2; "scale_shift" applies
    norm2(h) * (1 + scale) + shift. temb_channels=None drops `time_emb_proj` (VAE blocks). The shortcut,
    present when channels change (or use_in_shortcut), is a 1x1 conv: diffusers 0.35 ignores its own
    `conv_shortcut` flag, so msdiff has none.
    Up/down-sampling variants (nearest / average pool below, FIR in unet_2d_model_blocks) subclass and
    override `_resample`.
    """

    def __init__(self, in_channels: int, out_channels: int = None, temb_channels: int = 512, groups: int = 32,
                 groups_out: int = None, eps: float = 1e-6, time_embedding_norm: str = "default",
                 output_scale_factor: float = 1.0, use_in_shortcut: bool = None, conv_shortcut_bias: bool = True,
                 conv_2d_out_channels: int = None, skip_time_act: bool = False, dtype=ms.float32,
                 act_fn: str = "silu"):
        super().__init__()
        self.act_fn = act_fn
        if time_embedding_norm not in ("default", "scale_shift"):
            raise ValueError(f"ResnetBlock2D: unsupported time_embedding_norm {time_embedding_norm!r}")
        out_channels = out_channels or in_channels
        conv_2d_out_channels = conv_2d_out_channels or out_channels
        self.time_embedding_norm = time_embedding_norm
        self.output_scale_factor = output_scale_factor
        self.skip_time_act = skip_time_act
        self.norm1 = GroupNorm(groups, in_channels, eps=eps, dtype=dtype)
        self.conv1 = Conv2d(in_channels, out_channels, 3, padding=1, dtype=dtype)
        self.time_emb_proj = None
        if temb_channels is not None:
            mult = 2 if time_embedding_norm == "scale_shift" else 1
            self.time_emb_proj = Linear(temb_channels, mult * out_channels, dtype=dtype)
        self.norm2 = GroupNorm(groups_out or groups, out_channels, eps=eps, dtype=dtype)
        self.conv2 = Conv2d(out_channels, conv_2d_out_channels, 3, padding=1, dtype=dtype)
        if use_in_shortcut is None:
            use_in_shortcut = in_channels != conv_2d_out_channels
        self.conv_shortcut = None
        if use_in_shortcut:
            self.conv_shortcut = Conv2d(in_channels, conv_2d_out_channels, 1, bias=conv_shortcut_bias, dtype=dtype)

    def _resample(self, h: Tensor, x: Tensor):
        """Hook for up/down-sampling variants: resample (hidden, shortcut) after norm1; identity here."""
        return h, x

    def construct(self, x: Float[Tensor, "b c h w"], temb: Float[Tensor, "b t"] = None) -> Float[Tensor, "b o h w"]:
        h = ops.activate(self.norm1(x), self.act_fn)
        h, x = self._resample(h, x)
        h = self.conv1(h)
        if self.time_emb_proj is not None and temb is not None:
            t = temb if self.skip_time_act else ops.activate(temb, self.act_fn)
            t = self.time_emb_proj(t)
            # add_channels / expand_as, not a broadcast: see ops.layout on graph-mode memory
            if self.time_embedding_norm == "scale_shift":
                scale, shift = t.chunk(2, axis=1)
                h = self.norm2(h)
                h = ops.add_channels(h * ops.expand_as((1 + scale)[:, :, None, None], h), shift)
            else:
                h = self.norm2(ops.add_channels(h, t))
        else:
            if self.time_embedding_norm == "scale_shift":
                raise ValueError("ResnetBlock2D: time_embedding_norm 'scale_shift' needs temb")
            h = self.norm2(h)
        h = self.conv2(ops.activate(h, self.act_fn))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        out = x + h
        if self.output_scale_factor != 1.0:
            out = out / self.output_scale_factor
        return out


class UpResnetBlock2D(ResnetBlock2D):
    """diffusers' ResnetBlock2D(up=True): hidden and shortcut nearest-upsampled x2 after norm1."""

    def _resample(self, h: Tensor, x: Tensor):
        return (ops.interpolate(h, scale_factor=2.0, mode="nearest"),
                ops.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownResnetBlock2D(ResnetBlock2D):
    """diffusers' ResnetBlock2D(down=True): hidden and shortcut 2x2-average-pooled after norm1."""

    def _resample(self, h: Tensor, x: Tensor):
        return avg_pool_2x2(h), avg_pool_2x2(x)
