"""Class-name registry: diffusers/transformers class names -> msdiff nets and tokenizers.

Targets are "module:Class" strings imported only when a checkpoint asks for them, so
`import msdiff.io` never imports a net. A net module provides, at module level,
`config_from_diffusers(d: dict) -> Config` and `map_weights(key: str) -> str | None`; the
Cell is built as `Class(config, dtype=...)`. A class that shares its module with other nets
but needs its own functions may define `config_from_diffusers` / `map_weights` as
staticmethods, which then take precedence over the module-level ones. `map_weights` may
return None for a checkpoint key that is not a weight (e.g. a saved position-id buffer).

`register_net` / `register_tokenizer` extend the tables, with a "module:Class" string or the
class itself (then its functions come from the class or from the module defining it).
"""
import importlib
import inspect
import sys
from dataclasses import dataclass
from typing import Callable

NETS: dict = {
    "UNet2DConditionModel": "msdiff.nets.unet_k:UNet2DConditionModel",  # K blocks (sd-x2-latent-upscaler) or not
    "AutoencoderKL": "msdiff.nets.autoencoder_kl:AutoencoderKL",
    "CLIPTextModel": "msdiff.nets.clip_text:CLIPTextModel",
    "CLIPTextModelWithProjection": "msdiff.nets.clip_text:CLIPTextModelWithProjection",
    "UNet2DModel": "msdiff.nets.unet_2d:UNet2DModel",
    "VQModel": "msdiff.nets.vq_model:VQModel",
    "LDMBertModel": "msdiff.nets.ldm_bert:LDMBertModel",
    "DiTTransformer2DModel": "msdiff.nets.dit:DiTTransformer2DModel",
    "Transformer2DModel": "msdiff.nets.transformer_2d_legacy:Transformer2DModel",  # by norm_type: DiT or PixArt
    "PixArtTransformer2DModel": "msdiff.nets.pixart:PixArtTransformer2DModel",
    "SD3Transformer2DModel": "msdiff.nets.sd3_transformer:SD3Transformer2DModel",
    "ControlNetModel": "msdiff.nets.controlnet:ControlNetModel",
    "T2IAdapter": "msdiff.nets.t2i_adapter:T2IAdapter",
    "T5EncoderModel": "msdiff.nets.t5:T5EncoderModel",
    "UNet3DConditionModel": "msdiff.nets.unet_3d_condition:UNet3DConditionModel",
    "UNetSpatioTemporalConditionModel": "msdiff.nets.unet_spatio_temporal:UNetSpatioTemporalConditionModel",
    "AutoencoderKLTemporalDecoder": "msdiff.nets.autoencoder_kl_temporal:AutoencoderKLTemporalDecoder",
    "UNetMotionModel": "msdiff.nets.unet_motion:UNetMotionModel",
    "MotionAdapter": "msdiff.nets.unet_motion:MotionAdapter",
    "I2VGenXLUNet": "msdiff.nets.i2vgen_xl:I2VGenXLUNet",
    "CLIPVisionModelWithProjection": "msdiff.nets.clip_vision:CLIPVisionModelWithProjection",
    "CLIPVisionModel": "msdiff.nets.clip_vision:CLIPVisionModel",
    "CLIPImageProjection": "msdiff.nets.clip_image_projection:CLIPImageProjection",  # GLIGEN text-image
    "DPTForDepthEstimation": "msdiff.nets.dpt:DPTForDepthEstimation",
    "PriorTransformer": "msdiff.nets.prior_transformer:PriorTransformer",
    "UnCLIPTextProjModel": "msdiff.nets.unclip_text_proj:UnCLIPTextProjModel",
    "MultilingualCLIP": "msdiff.nets.multilingual_clip:MultilingualCLIP",  # Kandinsky 2.1's text encoder
}

TOKENIZERS: dict = {
    "BertTokenizer": "msdiff.tokenizer:BertTokenizer",
    "BertTokenizerFast": "msdiff.tokenizer:BertTokenizer",
    "CLIPTokenizer": "msdiff.tokenizer:CLIPTokenizer",
    "CLIPTokenizerFast": "msdiff.tokenizer:CLIPTokenizer",
    "T5Tokenizer": "msdiff.tokenizer_t5:T5Tokenizer",  # from tokenizer.json only (no sentencepiece)
    "T5TokenizerFast": "msdiff.tokenizer_t5:T5Tokenizer",
    "XLMRobertaTokenizer": "msdiff.tokenizer_t5:T5Tokenizer",  # tokenizer.json on `tokenizers`: the same right-padded
    "XLMRobertaTokenizerFast": "msdiff.tokenizer_t5:T5Tokenizer",  # pipeline (<s> ... </s> from its post-processor)
}


@dataclass(frozen=True)
class NetEntry:
    """What `msdiff.load` needs to build one registered net."""

    cls: type
    config_from_diffusers: Callable[[dict], object]
    map_weights: Callable[[str], "str | None"]


def register_net(class_name: str, target: "str | type") -> None:
    """Map a diffusers/transformers class name to an msdiff net: "module:Class" or the class itself."""
    if isinstance(target, str) and ":" not in target:
        raise ValueError(f"target must look like 'package.module:Class', got {target!r}")
    NETS[class_name] = target


def register_tokenizer(class_name: str, target: "str | type") -> None:
    """Map a tokenizer class name from model_index.json to an msdiff tokenizer: "module:Class" or the class."""
    if isinstance(target, str) and ":" not in target:
        raise ValueError(f"target must look like 'package.module:Class', got {target!r}")
    TOKENIZERS[class_name] = target


def _import(target: "str | type"):
    if isinstance(target, type):
        return sys.modules[target.__module__], target
    module_name, attr = target.split(":")
    module = importlib.import_module(module_name)
    return module, getattr(module, attr)


def net_entry(class_name: str) -> NetEntry:
    """Import and return the msdiff net registered for `class_name` (ValueError if unknown)."""
    if class_name not in NETS:
        raise ValueError(f"msdiff has no net for class {class_name!r}; supported classes: "
                         f"{', '.join(sorted(NETS))}")
    module, cls = _import(NETS[class_name])
    functions = {}
    for name in ("config_from_diffusers", "map_weights"):
        fn = inspect.getattr_static(cls, name, None)
        fn = fn.__func__ if isinstance(fn, staticmethod) else getattr(module, name, None)
        if not callable(fn):
            raise TypeError(f"{NETS[class_name]!r}: neither the class nor its module defines {name}()")
        functions[name] = fn
    return NetEntry(cls, **functions)


def tokenizer_class(class_name: str) -> type:
    """Import and return the msdiff tokenizer registered for `class_name` (ValueError if unknown)."""
    if class_name not in TOKENIZERS:
        raise ValueError(f"msdiff has no tokenizer for class {class_name!r}; supported classes: "
                         f"{', '.join(sorted(TOKENIZERS))}")
    return _import(TOKENIZERS[class_name])[1]
