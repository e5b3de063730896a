"""Precision-explicit tensor primitives; the only layer that knows the backend."""
from .activation import activate, geglu, gelu, quick_gelu, silu
from .attention import attention, softmax_bmm_attention
from .conv import conv2d, conv3d, conv_transpose2d, linear, temporal_conv
from .embedding import timestep_embedding
from .fir import downsample_fir, upfirdn2d, upsample_fir
from .layout import add_channels, expand_as, permute, swapaxes
from .norm import global_response_norm, group_norm, layer_norm, rms_norm
from .pool import adaptive_avg_pool2d
from .resample import embedding, interpolate, pad

__all__ = [
    "activate", "adaptive_avg_pool2d", "add_channels", "attention", "conv2d", "conv3d", "conv_transpose2d",
    "downsample_fir", "embedding", "expand_as", "geglu", "gelu", "global_response_norm", "group_norm",
    "interpolate", "layer_norm", "linear", "pad", "permute", "quick_gelu", "rms_norm", "silu",
    "softmax_bmm_attention", "swapaxes", "temporal_conv", "timestep_embedding", "upfirdn2d", "upsample_fir",
]
