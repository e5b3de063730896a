"""IP-Adapter in the SD recipes: diffusers' `ip_adapter_image=` turned into image tokens (the pipelines'
`encode_image` / `prepare_ip_adapter_image_embeds`, then the adapter's projection) and the conditioning piece
that hands them to the UNet. The adapter itself is loaded by msdiff.io.ip_adapter.load_ip_adapter."""
from typing import Optional, Tuple

import mindspore as ms
from mindspore import Tensor
from mindspore import ops as mops

from ..conditioning import CFG, NoGuidance, cfg_batch
from ..conditioning.image_tokens import ImageTokens
from ..io import ip_adapter as ipa
from .clip_image import clip_image_config, preprocess


def _image_config(components, encoder):
    """The pipeline's feature_extractor, else diffusers' default CLIPImageProcessor at the encoder's image size."""
    fe = components.extra.get("feature_extractor")
    if isinstance(fe, dict):
        return clip_image_config(fe)
    size = encoder.config.image_size
    return clip_image_config({"size": size, "crop_size": size})


def image_tokens(components, ip_adapter_image, *, batch: int, guidance: bool) -> Tuple[Optional[Tensor], Tensor]:
    """(negative or None, positive) image tokens [batch, T, d] of one IP image (PIL / numpy / CLIP pixel_values):
    base adapters project the image embeds (negative: zeros), plus adapters the penultimate vision layer's hidden
    states (negative: those of a zero image), as diffusers' encode_image; rows copied as whole batches."""
    if not ipa.has_ip_adapter(components):
        raise ValueError("ip_adapter_image= needs an IP-Adapter: call msdiff.io.ip_adapter.load_ip_adapter first")
    state = ipa.ip_adapter_state(components)
    encoder = state.image_encoder if state.image_encoder is not None else components.extra.get("image_encoder")
    if encoder is None:
        raise ValueError("ip_adapter_image: no image encoder (load_ip_adapter found no image_encoder/ folder beside "
                         "the adapter and the pipeline has none)")
    pixels = ip_adapter_image if isinstance(ip_adapter_image, Tensor) else \
        preprocess(ip_adapter_image, _image_config(components, encoder))
    if state.plus:
        pos = encoder(pixels)[2][-2]
        neg = encoder(mops.zeros_like(pixels))[2][-2] if guidance else None
    else:
        pos = encoder(pixels)[1]
        neg = mops.zeros_like(pos) if guidance else None
    if batch % pos.shape[0]:
        raise ValueError(f"ip_adapter_image: {pos.shape[0]} image(s) for {batch} prompt rows (give one image or one "
                         f"per row)")
    copies = batch // pos.shape[0]

    def tokens(e):
        t = ipa.ip_adapter_tokens(components, e).astype(ms.float32)
        return mops.concat([t] * copies, axis=0) if copies > 1 else t

    return (None if neg is None else tokens(neg)), tokens(pos)


def ip_pieces(components, tokens, guidance) -> tuple:
    """The ImageTokens piece for `tokens` (negative, positive) under `guidance`, () without; ValueError if the UNet
    has an IP-Adapter but no image was given (its attentions would read text tokens as image tokens)."""
    loaded = ipa.has_ip_adapter(components)
    if tokens is None:
        if loaded:
            raise ValueError("an IP-Adapter is loaded: pass ip_adapter_image= (or unload_ip_adapter first)")
        return ()
    neg, pos = tokens
    if type(guidance) not in (CFG, NoGuidance):
        raise ValueError(f"IP-Adapter with {type(guidance).__name__} guidance is not implemented")
    return (ImageTokens(cfg_batch(neg if guidance.copies == 2 else None, pos)),)



def cli_ip_adapter(components, adapter, image, scale: float = 1.0, load: bool = True):
    """The CLI's --ip-adapter FILE_OR_FOLDER --ip-image IMG [--ip-adapter-scale S]: the adapter loaded into the
    components (unless load=False: already there) and the image (RGB PIL) to pass as ip_adapter_image."""
    import PIL.Image

    if adapter is None or image is None:
        raise ValueError("--ip-adapter and --ip-image go together (the adapter and the image it reads)")
    if components is None or components.unet is None:
        raise ValueError("--ip-adapter needs --model (a Stable Diffusion / SD-XL pipeline)")
    try:
        picture = PIL.Image.open(image).convert("RGB")
    except OSError as e:
        raise ValueError(f"--ip-image {image!r}: cannot read it as an image ({e})") from None
    if load:
        ipa.load_ip_adapter(components, adapter, scale=float(scale))
    return picture
