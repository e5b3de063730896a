"""Stable Video Diffusion's spatio-temporal pieces: TemporalResnetBlock, SpatioTemporalResBlock and
TransformerSpatioTemporalModel (a spatial block and a temporal block per layer, blended by an AlphaBlender)."""
import mindspore as ms
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from .. import ops
from .attention import BasicTransformerBlock
from .embeddings import TimestepEmbedding, Timesteps
from .layers import GroupNorm, Linear
from .resnet import ResnetBlock2D
from .temporal import AlphaBlender, Conv3d, TemporalBasicTransformerBlock, to_frames, to_video


class TemporalResnetBlock(nn.Cell):
    """diffusers' TemporalResnetBlock: ResnetBlock2D's body with 3x1x1 Conv3d over video tensors [b, c, f, h, w];
    the per-frame time embedding temb [b, f, t] is added after conv1."""

    def __init__(self, in_channels: int, out_channels: int = None, temb_channels: int = 512, eps: float = 1e-6,
                 dtype=ms.float32):
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm1 = GroupNorm(32, in_channels, eps=eps, dtype=dtype)
        self.conv1 = Conv3d(in_channels, out_channels, (3, 1, 1), padding=(1, 0, 0), dtype=dtype)
        self.time_emb_proj = Linear(temb_channels, out_channels, dtype=dtype) if temb_channels is not None else None
        self.norm2 = GroupNorm(32, out_channels, eps=eps, dtype=dtype)
        self.conv2 = Conv3d(out_channels, out_channels, (3, 1, 1), padding=(1, 0, 0), dtype=dtype)
        self.conv_shortcut = None
        if in_channels != out_channels:
            self.conv_shortcut = Conv3d(in_channels, out_channels, 1, dtype=dtype)

    def construct(self, x: Float[Tensor, "b c f h w"],
                  temb: Float[Tensor, "b f t"] = None) -> Float[Tensor, "b o f h w"]:
        h = self.conv1(ops.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(ops.silu(temb)).transpose(0, 2, 1)[:, :, :, None, None]
        h = self.conv2(ops.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class SpatioTemporalResBlock(nn.Cell):
    """diffusers' SpatioTemporalResBlock: a per-frame ResnetBlock2D, then a TemporalResnetBlock, blended.

    merge_strategy / switch_spatial_to_temporal_mix as AlphaBlender (the temporal decoder's blocks use
    "learned" with the switch, the UNet's "learned_with_images").
    """

    def __init__(self, in_channels: int, out_channels: int = None, temb_channels: int = 512, eps: float = 1e-6,
                 temporal_eps: float = None, merge_factor: float = 0.5, merge_strategy: str = "learned_with_images",
                 switch_spatial_to_temporal_mix: bool = False, dtype=ms.float32):
        super().__init__()
        out_channels = out_channels or in_channels
        self.spatial_res_block = ResnetBlock2D(in_channels, out_channels, temb_channels, eps=eps, dtype=dtype)
        self.temporal_res_block = TemporalResnetBlock(out_channels, out_channels, temb_channels,
                                                      eps=temporal_eps if temporal_eps is not None else eps,
                                                      dtype=dtype)
        self.time_mixer = AlphaBlender(merge_factor, merge_strategy, switch_spatial_to_temporal_mix)

    def construct(self, x: Float[Tensor, "bf c h w"], temb: Float[Tensor, "bf t"],
                  image_only_indicator: Float[Tensor, "b f"]) -> Float[Tensor, "bf o h w"]:
        f = image_only_indicator.shape[-1]
        spatial = to_video(self.spatial_res_block(x, temb), f)
        if temb is not None:
            temb = temb.reshape(temb.shape[0] // f, f, -1)
        temporal = self.temporal_res_block(spatial, temb)
        return to_frames(self.time_mixer(spatial, temporal, image_only_indicator))


class TransformerSpatioTemporalModel(nn.Cell):
    """diffusers' TransformerSpatioTemporalModel: per layer a spatial BasicTransformerBlock and a temporal block
    (its input plus a frame-index embedding, attending to the first frame's context), blended by an AlphaBlender."""

    def __init__(self, num_attention_heads: int, attention_head_dim: int, in_channels: int, num_layers: int = 1,
                 cross_attention_dim: int = None, dtype=ms.float32):
        super().__init__()
        inner = num_attention_heads * attention_head_dim
        self.norm = GroupNorm(32, in_channels, eps=1e-6, dtype=dtype)
        self.proj_in = Linear(in_channels, inner, dtype=dtype)
        self.transformer_blocks = nn.CellList([
            BasicTransformerBlock(inner, num_attention_heads, attention_head_dim, cross_attention_dim, dtype=dtype)
            for _ in range(num_layers)])
        self.temporal_transformer_blocks = nn.CellList([
            TemporalBasicTransformerBlock(inner, inner, num_attention_heads, attention_head_dim, cross_attention_dim,
                                          dtype=dtype)
            for _ in range(num_layers)])
        self.time_pos_embed = TimestepEmbedding(in_channels, in_channels * 4, out_dim=in_channels, dtype=dtype)
        self.time_proj = Timesteps(in_channels, True, 0)
        self.time_mixer = AlphaBlender(0.5, "learned_with_images")
        self.proj_out = Linear(inner, in_channels, dtype=dtype)

    def construct(self, x: Float[Tensor, "bf c h w"], context: Float[Tensor, "bf m d"],
                  image_only_indicator: Float[Tensor, "b f"]) -> Float[Tensor, "bf c h w"]:
        bf, c, h, w = x.shape
        f = image_only_indicator.shape[-1]
        b = bf // f
        # the temporal blocks attend to the first frame's context, one copy per pixel
        first = context.reshape(b, f, context.shape[1], context.shape[2])[:, 0]
        time_context = mops.broadcast_to(first[:, None], (b, h * w) + first.shape[1:]).reshape(
            b * h * w, first.shape[1], first.shape[2])
        tokens = self.norm(x).transpose(0, 2, 3, 1).reshape(bf, h * w, c)
        tokens = self.proj_in(tokens)
        frames = mops.tile(mops.arange(f).astype(ms.float32), (b,))
        emb = self.time_pos_embed(self.time_proj(frames).astype(tokens.dtype))[:, None, :]
        for i in range(len(self.transformer_blocks)):
            tokens = self.transformer_blocks[i](tokens, context)
            mixed = self.temporal_transformer_blocks[i](tokens + emb, f, time_context)
            tokens = self.time_mixer(tokens, mixed, image_only_indicator)
        tokens = self.proj_out(tokens)
        return tokens.reshape(bf, h, w, c).transpose(0, 3, 1, 2) + x
