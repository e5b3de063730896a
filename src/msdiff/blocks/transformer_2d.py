"""Transformer2DModel: GroupNorm, projection to tokens, BasicTransformerBlocks, projection back, residual."""
import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn

from .attention import BasicTransformerBlock
from .layers import Conv2d, GroupNorm, Linear


def _conv1x1(in_channels: int, out_channels: int, dtype=ms.float32) -> Conv2d:
    return Conv2d(in_channels, out_channels, 1, dtype=dtype)


class Transformer2DModel(nn.Cell):
    """diffusers' continuous-input Transformer2DModel; proj_in/proj_out are 1x1 convs (SD 1.x) or Linears
    (use_linear_projection, SD 2.x / XL). The two variants differ only in where the token reshape sits."""

    def __init__(self, num_attention_heads: int, attention_head_dim: int, in_channels: int, num_layers: int = 1,
                 cross_attention_dim: int = None, norm_num_groups: int = 32, use_linear_projection: bool = False,
                 only_cross_attention: bool = False, double_self_attention: bool = False,
                 activation_fn: str = "geglu", attention_bias: bool = False, norm_eps: float = 1e-5,
                 dtype=ms.float32):
        super().__init__()
        inner = num_attention_heads * attention_head_dim
        self.use_linear_projection = use_linear_projection
        self.norm = GroupNorm(norm_num_groups, in_channels, eps=1e-6, dtype=dtype)
        proj = Linear if use_linear_projection else _conv1x1
        self.proj_in = proj(in_channels, inner, dtype=dtype)
        self.transformer_blocks = nn.CellList([
            BasicTransformerBlock(inner, num_attention_heads, attention_head_dim, cross_attention_dim,
                                  activation_fn=activation_fn, attention_bias=attention_bias,
                                  only_cross_attention=only_cross_attention,
                                  double_self_attention=double_self_attention, norm_eps=norm_eps, dtype=dtype)
            for _ in range(num_layers)])
        self.proj_out = proj(inner, in_channels, dtype=dtype)

    def construct(self, x: Float[Tensor, "b c h w"],
                  context: Float[Tensor, "b m d"] = None) -> Float[Tensor, "b c h w"]:
        residual = x
        b, _, h, w = x.shape
        # Tensor.transpose, not ops.permute: in graph mode on CPU it keeps 2x its output (~370 MB per SD-1.5 step at
        # 64x64 latents), but mint's view + copy is 4-5x slower (SD-1.5 step 32x32: +2%); benchmarks/README.md
        x = self.norm(x)
        if not self.use_linear_projection:
            x = self.proj_in(x)
        x = x.transpose(0, 2, 3, 1).reshape(b, h * w, -1)
        if self.use_linear_projection:
            x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x, context)
        if self.use_linear_projection:
            x = self.proj_out(x)
        x = x.reshape(b, h, w, -1).transpose(0, 3, 1, 2)
        if not self.use_linear_projection:
            x = self.proj_out(x)
        return x + residual
