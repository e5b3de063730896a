"""diffusers' legacy `Transformer2DModel` class name for patch-input transformers, dispatched on norm_type as diffusers
remaps it on load: "ada_norm_zero" -> DiT (facebook/DiT-XL-2-*), "ada_norm_single" -> PixArt (PixArt-XL-2-*)."""
import mindspore as ms
from mindspore import nn

from . import dit, pixart

_NETS = {"ada_norm_zero": dit, "ada_norm_single": pixart}


def config_from_diffusers(d: dict):
    """DiTConfig or PixArtConfig by the config's norm_type (ValueError for the continuous / vector variants)."""
    norm_type = d.get("norm_type", "layer_norm")
    if norm_type not in _NETS:
        raise ValueError(f"Transformer2DModel: msdiff reads this class as DiT (norm_type 'ada_norm_zero') or PixArt "
                         f"('ada_norm_single'), as diffusers remaps them; got norm_type {norm_type!r}")
    return _NETS[norm_type].config_from_diffusers(d)


def map_weights(key: str):
    """diffusers state-dict key -> msdiff parameter name (both nets: identity; a saved position table is dropped)."""
    return pixart.map_weights(key)


def Transformer2DModel(config, dtype=ms.float32) -> nn.Cell:  # noqa: N802 (the registry builds nets by class name)
    """The DiT or PixArt net for a config read by `config_from_diffusers`."""
    if isinstance(config, pixart.PixArtConfig):
        return pixart.PixArtTransformer2DModel(config, dtype=dtype)
    return dit.DiTTransformer2DModel(config, dtype=dtype)
