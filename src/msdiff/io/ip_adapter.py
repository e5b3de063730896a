"""IP-Adapter (base; SD 1.x and SD-XL) on loaded components: `load_ip_adapter`, `set_ip_adapter_scale`,
`ip_adapter_tokens`, `with_image_tokens`.

Reads h94/IP-Adapter-style safetensors (`image_proj.proj.*` / `image_proj.norm.*`, `ip_adapter.{k}.to_k_ip.weight`
with k = 1, 3, 5, ... over the UNet's cross-attentions in diffusers' attn_processors order: down, up, mid).
Each attn2 becomes a `blocks.ip_adapter.IPAttention`; image tokens travel at the end of
`encoder_hidden_states`:

    tokens = ip_adapter_tokens(c, image_embeds)                  # [b, 4, d] from CLIP image embeds [b, e]
    ctx = with_image_tokens(prompt_embeds, tokens)               # [b, n + 4, d]
    (for classifier-free guidance the negative half gets ip_adapter_tokens(c, zeros), as diffusers)

"IP-Adapter Plus" (Resampler image projection), Full-Face and Face-ID files are refused (not implemented).
"""
import weakref

import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..blocks.attention import Attention
from ..blocks.ip_adapter import ImageProjection, IPAttention, ip_scale
from ..blocks.layers import Linear
from ..blocks.lora import ParameterWriter
from .lora import replace_cell, restore_parameter_names
from .lora_keys import read_safetensors
from .paths import LoadError

_STATES = weakref.WeakKeyDictionary()


class IPAdapterState:
    """A UNet's IP-Adapter: projection, wrapped attentions (with their originals) and the scale writer."""

    def __init__(self, projection, originals: dict, scale):
        self.projection, self.originals, self.scale = projection, originals, scale
        self.writer = None


def cross_attentions(unet) -> list:
    """(path, Attention) of the UNet's attn2 layers in diffusers' attn_processors order (down, up, mid)."""
    found = [(n, c) for n, c in unet.cells_and_names() if n.endswith(".attn2") and isinstance(c, (Attention,
                                                                                                  IPAttention))]
    order = {"down_blocks": 0, "up_blocks": 1, "mid_block": 2}
    return sorted(found, key=lambda nc: order[nc[0].split(".")[0]])


def _linear(weight: np.ndarray, dtype, bias: np.ndarray = None) -> Linear:
    layer = Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=dtype)
    layer.weight.set_data(Tensor(weight).astype(dtype))
    if bias is not None:
        layer.bias.set_data(Tensor(bias).astype(dtype))
    return layer


def load_ip_adapter(components, path, scale: float = 1.0) -> None:
    """Install a base IP-Adapter file into components.unet (strict: every key used, every shape checked)."""
    unet = components.unet
    if unet in _STATES:
        raise LoadError("load_ip_adapter: this UNet already has an IP-Adapter (one at a time is implemented)")
    tensors, _ = read_safetensors(path)
    if "image_proj.latents" in tensors or any(k.startswith("image_proj.proj.3") or "perceiver" in k for k in tensors):
        raise LoadError(f"{path}: IP-Adapter Plus / Full-Face / Face-ID image projections are not implemented "
                        f"(base IP-Adapter only)")
    proj_w = tensors.get("image_proj.proj.weight")
    if proj_w is None or "image_proj.norm.weight" not in tensors:
        raise LoadError(f"{path}: not an IP-Adapter file (no image_proj.proj.weight / image_proj.norm.weight)")
    dtype = unet.compute_dtype
    cross = tensors["image_proj.norm.weight"].shape[0]
    tokens = proj_w.shape[0] // cross
    projection = ImageProjection(proj_w.shape[1], cross, tokens, dtype=dtype)
    for name, key in (("image_embeds.weight", "proj.weight"), ("image_embeds.bias", "proj.bias"),
                      ("norm.weight", "norm.weight"), ("norm.bias", "norm.bias")):
        dict(projection.parameters_and_names())[name].set_data(Tensor(tensors[f"image_proj.{key}"]).astype(dtype))
    attns = cross_attentions(unet)
    used = {f"image_proj.{k}" for k in ("proj.weight", "proj.bias", "norm.weight", "norm.bias")}
    param = ip_scale(scale, "ip_adapter_scale")
    wrapped = {}
    for k, (name, attn) in enumerate(attns):
        key = f"ip_adapter.{2 * k + 1}"
        to_k, to_v = tensors.get(f"{key}.to_k_ip.weight"), tensors.get(f"{key}.to_v_ip.weight")
        if to_k is None or to_v is None:
            raise LoadError(f"{path}: no {key}.to_k_ip / to_v_ip weight for {name} (an IP-Adapter for another UNet?)")
        want = (attn.to_k.weight.shape[0], attn.to_k.weight.shape[1])
        if to_k.shape != want or to_v.shape != want:
            raise LoadError(f"{path}: {key} weights {to_k.shape} / {to_v.shape} do not fit {name} ({want}; an "
                            f"IP-Adapter for another model?)")
        used |= {f"{key}.to_k_ip.weight", f"{key}.to_v_ip.weight"}
        wrapped[name] = (attn, IPAttention(attn, _linear(to_k, dtype), _linear(to_v, dtype), tokens, param))
    unused = sorted(set(tensors) - used)
    if unused:
        raise LoadError(f"{path}: {len(unused)} IP-Adapter key(s) match no layer: {', '.join(unused[:5])}")
    for name, (_, ip) in wrapped.items():
        replace_cell(unet, name, ip)
    restore_parameter_names(unet, keep=(param,))
    param.name = "ip_adapter_scale"
    _STATES[unet] = IPAdapterState(projection, {n: a for n, (a, _) in wrapped.items()}, param)


def _state(components) -> IPAdapterState:
    state = _STATES.get(components.unet)
    if state is None:
        raise LoadError("no IP-Adapter is loaded (call load_ip_adapter first)")
    return state


def set_ip_adapter_scale(components, scale: float) -> None:
    """diffusers' set_ip_adapter_scale (one number): written in place, nothing recompiles."""
    state = _state(components)
    if state.writer is None:
        state.writer = ParameterWriter([state.scale])
    state.writer([np.asarray([scale], np.float32)])


def ip_adapter_tokens(components, image_embeds: Float[Tensor, "b e"]) -> Float[Tensor, "b t d"]:
    """Image tokens of CLIP image embeds (CLIPVisionModelWithProjection's image_embeds) through the projection."""
    return _state(components).projection(image_embeds)


def with_image_tokens(prompt_embeds: Float[Tensor, "b n d"], tokens: Float[Tensor, "b t d"]) -> Float[Tensor, "b m d"]:
    """encoder_hidden_states for an IP-Adapter UNet: the image tokens appended after the text tokens."""
    return mops.concat((prompt_embeds, tokens.astype(prompt_embeds.dtype)), axis=1)


def unload_ip_adapter(components) -> None:
    """Put the plain cross-attentions back."""
    state = _state(components)
    unet = components.unet
    for name, attn in state.originals.items():
        replace_cell(unet, name, attn)
    restore_parameter_names(unet)
    del _STATES[unet]
