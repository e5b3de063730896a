"""IP-Adapter (base and "plus"; SD 1.x and SD-XL) on loaded components: `load_ip_adapter`, `set_ip_adapter_scale`,
`ip_adapter_tokens`, `with_image_tokens`, `unload_ip_adapter`.

Reads h94/IP-Adapter-style safetensors: the base projection (`image_proj.proj.*` / `image_proj.norm.*`, from CLIP
image embeds) or the "plus" Resampler (`image_proj.latents`, `proj_in`, `layers.{i}.0.{norm1,norm2,to_q,to_kv,
to_out}`, `layers.{i}.1.{0,1,3}`, `proj_out`, `norm_out`, from the penultimate CLIP vision layer's hidden states),
and `ip_adapter.{k}.to_k_ip.weight` with k = 1, 3, 5, ... over the UNet's cross-attentions in diffusers'
attn_processors order (down, up, mid). A file's folder may hold `image_encoder/` (a CLIPVisionModelWithProjection,
h94's layout), loaded with it. Each attn2 becomes a `blocks.ip_adapter.IPAttention`; image tokens travel at the end
of `encoder_hidden_states`:

    tokens = ip_adapter_tokens(c, image_embeds)        # base: [b, T, d] from image embeds [b, e];
                                                       # plus: from hidden states [b, n, e]
    ctx = with_image_tokens(prompt_embeds, tokens)     # [b, n + T, d]

The recipes take diffusers' `ip_adapter_image=` (msdiff.recipes.ip_adapter). Full-Face and Face-ID files are
refused (not implemented).
"""
import weakref
from pathlib import Path

import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..blocks.attention import Attention
from ..blocks.ip_adapter import ImageProjection, IPAttention, Resampler, ip_scale
from ..blocks.layers import Linear
from ..blocks.lora import ParameterWriter
from .lora import replace_cell, restore_parameter_names
from .lora_keys import read_safetensors
from .paths import LoadError

_STATES = weakref.WeakKeyDictionary()


class IPAdapterState:
    """A UNet's IP-Adapter: projection, wrapped attentions (with their originals) and the scale writer."""

    def __init__(self, projection, originals: dict, scale, image_encoder=None):
        self.projection, self.originals, self.scale = projection, originals, scale
        self.image_encoder, self.writer = image_encoder, None

    @property
    def plus(self) -> bool:
        """The projection reads CLIP vision hidden states (penultimate layer), not image embeds."""
        return isinstance(self.projection, Resampler)


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


def _set(cell, names: dict, dtype) -> None:
    """cell's parameters (msdiff name -> array) set from `names` (msdiff name -> array), shapes checked."""
    params = dict(cell.parameters_and_names())
    for name, value in names.items():
        if tuple(params[name].shape) != tuple(value.shape):
            raise LoadError(f"IP-Adapter projection: {name} has shape {value.shape}, expected {params[name].shape}")
        params[name].set_data(Tensor(value).astype(dtype))


def _base_projection(tensors: dict, dtype) -> tuple:
    """(ImageProjection, keys used) of a base IP-Adapter file."""
    proj_w, cross = tensors["image_proj.proj.weight"], tensors["image_proj.norm.weight"].shape[0]
    projection = ImageProjection(proj_w.shape[1], cross, proj_w.shape[0] // cross, dtype=dtype)
    pairs = {"image_embeds.weight": "proj.weight", "image_embeds.bias": "proj.bias", "norm.weight": "norm.weight",
             "norm.bias": "norm.bias"}
    _set(projection, {n: tensors[f"image_proj.{k}"] for n, k in pairs.items()}, dtype)
    return projection, {f"image_proj.{k}" for k in pairs.values()}


_PLUS_LAYER = {"0.norm1": "ln0", "0.norm2": "ln1", "0.to_q": "to_q", "0.to_out": "to_out", "1.0": "ff_norm",
               "1.1": "ff_up", "1.3": "ff_down"}


def plus_key(key: str):
    """h94 Resampler key (image_proj.* stripped) -> msdiff Resampler parameter name(s); None if not one."""
    if key in ("latents",) or key.split(".")[0] in ("proj_in", "proj_out", "norm_out"):
        return key
    parts = key.split(".")
    if parts[0] != "layers" or len(parts) != 5:
        return None
    i, inner, leaf = parts[1], f"{parts[2]}.{parts[3]}", parts[4]
    if inner == "0.to_kv":
        return (f"layers.{i}.to_k.{leaf}", f"layers.{i}.to_v.{leaf}")
    return f"layers.{i}.{_PLUS_LAYER[inner]}.{leaf}" if inner in _PLUS_LAYER else None


def _plus_projection(tensors: dict, path, dtype) -> tuple:
    """(Resampler, keys used) of an IP-Adapter Plus file (diffusers' IPAdapterPlusImageProjection)."""
    proj = {k[len("image_proj."):]: v for k, v in tensors.items() if k.startswith("image_proj.")}
    for need in ("latents", "proj_in.weight", "proj_out.weight", "layers.0.0.to_q.weight"):
        if need not in proj:
            raise LoadError(f"{path}: IP-Adapter Plus file without image_proj.{need}")
    depth = len({k.split(".")[1] for k in proj if k.startswith("layers.")})
    _, queries, hidden = proj["latents"].shape
    projection = Resampler(proj["proj_in.weight"].shape[1], proj["proj_out.weight"].shape[0], hidden,
                           proj["layers.0.0.to_q.weight"].shape[0] // 64, queries, depth, dtype=dtype)
    names = {}
    for key, value in proj.items():
        name = plus_key(key)
        if name is None:
            raise LoadError(f"{path}: image_proj.{key} is not a Resampler key (a Face-ID / other projection?)")
        if isinstance(name, tuple):
            k, v = np.split(value, 2, axis=0)
            names.update({name[0]: k, name[1]: v})
        else:
            names[name] = value
    missing = sorted(set(dict(projection.parameters_and_names())) - set(names))
    if missing:
        raise LoadError(f"{path}: IP-Adapter Plus file misses {len(missing)} projection weight(s): {missing[:5]}")
    _set(projection, names, dtype)
    return projection, {f"image_proj.{k}" for k in proj}


def adapter_file(path) -> Path:
    """The adapter's safetensors: `path` itself, or the one *.safetensors file of a folder."""
    path = Path(path)
    if not path.is_dir():
        return path
    found = sorted(path.glob("*.safetensors"))
    if len(found) != 1:
        raise LoadError(f"{path}: an IP-Adapter folder must hold exactly one .safetensors file, found "
                        f"{[f.name for f in found]} (pass the file instead)")
    return found[0]


def load_ip_adapter(components, path, scale: float = 1.0, image_encoder=None) -> None:
    """Install an IP-Adapter file (base or plus; a folder with one .safetensors) into components.unet, strictly:
    every key used, every shape checked. The image encoder: `image_encoder` (a loaded CLIP vision net), else the
    `image_encoder/` folder beside the file (h94's layout), else components.extra["image_encoder"]."""
    unet = components.unet
    if unet in _STATES:
        raise LoadError("load_ip_adapter: this UNet already has an IP-Adapter (one at a time is implemented)")
    path = adapter_file(path)
    tensors, _ = read_safetensors(path)
    dtype = unet.compute_dtype
    if "image_proj.latents" in tensors:
        projection, used = _plus_projection(tensors, path, dtype)
    elif "image_proj.proj.weight" in tensors and "image_proj.norm.weight" in tensors:
        projection, used = _base_projection(tensors, dtype)
    elif any(k.startswith("image_proj.") for k in tensors):
        raise LoadError(f"{path}: IP-Adapter Full-Face / Face-ID image projections are not implemented (base and "
                        f"plus only)")
    else:
        raise LoadError(f"{path}: not an IP-Adapter file (no image_proj.* weights)")
    if image_encoder is None and (path.parent / "image_encoder" / "config.json").is_file():
        from .loader import load
        image_encoder = load(path.parent / "image_encoder", dtype=dtype)
    attns = cross_attentions(unet)
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
        ip = IPAttention(attn, _linear(to_k, dtype), _linear(to_v, dtype), projection.num_tokens, param)
        wrapped[name] = (attn, ip)
    unused = sorted(set(tensors) - used)
    if unused:
        raise LoadError(f"{path}: {len(unused)} IP-Adapter key(s) match no layer: {', '.join(unused[:5])}")
    for name, (_, ip) in wrapped.items():
        replace_cell(unet, name, ip)
    restore_parameter_names(unet, keep=(param,))
    param.name = "ip_adapter_scale"
    _STATES[unet] = IPAdapterState(projection, {n: a for n, (a, _) in wrapped.items()}, param, image_encoder)


def has_ip_adapter(components) -> bool:
    """Whether components.unet has an IP-Adapter loaded."""
    return components.unet in _STATES


def ip_adapter_state(components) -> IPAdapterState:
    """The UNet's IPAdapterState (LoadError when none is loaded)."""
    state = _STATES.get(components.unet)
    if state is None:
        raise LoadError("no IP-Adapter is loaded (call load_ip_adapter first)")
    return state


def set_ip_adapter_scale(components, scale: float) -> None:
    """diffusers' set_ip_adapter_scale (one number): written in place, nothing recompiles."""
    state = ip_adapter_state(components)
    if state.writer is None:
        state.writer = ParameterWriter([state.scale])
    state.writer([np.asarray([scale], np.float32)])


def ip_adapter_tokens(components, image_embeds: Float[Tensor, "b ..."]) -> Float[Tensor, "b t d"]:
    """Image tokens through the adapter's projection: of CLIP image embeds [b, e] (base) or of the penultimate
    CLIP vision hidden states [b, n, e] (plus)."""
    return ip_adapter_state(components).projection(image_embeds)


def with_image_tokens(prompt_embeds: Float[Tensor, "b n d"], tokens: Float[Tensor, "b t d"]) -> Float[Tensor, "b m d"]:
    """encoder_hidden_states for an IP-Adapter UNet: the image tokens appended after the text tokens."""
    return mops.concat((prompt_embeds, tokens.astype(prompt_embeds.dtype)), axis=1)


def unload_ip_adapter(components) -> None:
    """Put the plain cross-attentions back."""
    state = ip_adapter_state(components)
    unet = components.unet
    for name, attn in state.originals.items():
        replace_cell(unet, name, attn)
    restore_parameter_names(unet)
    del _STATES[unet]
