"""CLIP image preprocessing equal to transformers 4.57's `CLIPImageProcessor` (numpy / PIL edge).

`preprocess(images, clip_image_config(feature_extractor_dict))` gives the `pixel_values` the
processor gives, for PIL images and H x W x 3 (or 3 x H x W) numpy arrays, uint8 or float: the
shortest edge resized with Pillow's bicubic (antialiased when shrinking), a center crop (zero
padded when the image is smaller), rescale by 1/255 and normalisation by the config's mean/std.
As in transformers, a float array in [0, 1] is scaled to uint8 by truncation for the Pillow
resize and back; it is then rescaled again unless `do_rescale` is false (transformers warns).
The shared pieces (`to_arrays`, `resize`, `rescale`, `normalize`) also serve `dpt_image`.
"""
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

ImageInput = Union["PIL.Image.Image", np.ndarray, Sequence]

# Keys of a preprocessor_config.json that name the class or do not change pixel values.
_QUIET_KEYS = frozenset({"image_processor_type", "feature_extractor_type", "processor_class"})


@dataclass(frozen=True)
class CLIPImageConfig:
    """CLIPImageProcessor settings; defaults are transformers' (OpenAI CLIP at 224)."""

    do_resize: bool = True
    size: tuple = (("shortest_edge", 224),)  # a size dict as sorted items
    resample: int = 3  # PIL.Image.BICUBIC
    do_center_crop: bool = True
    crop_size: tuple = (224, 224)  # (height, width)
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple = OPENAI_CLIP_MEAN
    image_std: tuple = OPENAI_CLIP_STD
    do_convert_rgb: bool = True


def size_dict(size, default_to_square: bool, what: str) -> dict:
    """transformers' get_size_dict: an int -> {"shortest_edge"} or {"height", "width"}; a dict is checked."""
    if isinstance(size, int):
        return {"height": size, "width": size} if default_to_square else {"shortest_edge": size}
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return {"height": int(size[0]), "width": int(size[1])}
    if isinstance(size, dict) and (set(size) in ({"height", "width"}, {"shortest_edge"},
                                                 {"shortest_edge", "longest_edge"}, {"longest_edge"})):
        return dict(size)
    raise ValueError(f"image processor: {what}={size!r} is not an int, (height, width) or a size dict")


def check_keys(d: dict, fields: set, quiet: frozenset, what: str) -> None:
    """ValueError naming the preprocessor_config.json keys msdiff does not implement."""
    unknown = sorted(k for k in d if k not in fields and k not in quiet and not k.startswith("_"))
    if unknown:
        raise ValueError(f"{what}: preprocessor config keys not implemented by msdiff: {unknown}")


def clip_image_config(d: dict) -> CLIPImageConfig:
    """CLIPImageConfig from a preprocessor_config.json dict (missing keys: transformers' defaults)."""
    fields = {f.name for f in dataclasses.fields(CLIPImageConfig)}
    check_keys(d, fields | {"use_square_size"}, _QUIET_KEYS, "CLIPImageProcessor")
    values = {k: d[k] for k in fields if k in d}
    size = size_dict(d.get("size", 224), False, "size")
    if d.get("use_square_size"):
        size = {"height": size["shortest_edge"], "width": size["shortest_edge"]}
    if set(size) not in ({"shortest_edge"}, {"height", "width"}):
        raise ValueError(f"CLIPImageProcessor: size={size!r} must hold 'shortest_edge' or 'height' and 'width'")
    values["size"] = tuple(sorted(size.items()))
    crop = size_dict(d.get("crop_size", 224), True, "crop_size")
    values["crop_size"] = (crop["height"], crop["width"])
    for key in ("image_mean", "image_std"):
        if key in d:
            values[key] = tuple(d[key]) if isinstance(d[key], (list, tuple)) else (d[key],) * 3
    return CLIPImageConfig(**values)


def load_clip_image_config(folder: "str | os.PathLike") -> CLIPImageConfig:
    """CLIPImageConfig from a feature_extractor / image processor folder's preprocessor_config.json."""
    import json

    path = Path(folder) / "preprocessor_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no preprocessor_config.json in {folder}")
    return clip_image_config(json.loads(path.read_text()))


# Shared steps ---------------------------------------------------------------------------------------

def to_arrays(images: ImageInput, convert_rgb: bool) -> list:
    """PIL / numpy image(s) -> list of H x W x 3 numpy arrays (dtype kept; PIL -> uint8 RGB if convert_rgb)."""
    import PIL.Image

    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    if not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise ValueError("image processor: no images given")
    out = []
    for i, image in enumerate(images):
        if isinstance(image, PIL.Image.Image):
            image = np.asarray(image.convert("RGB") if convert_rgb and image.mode != "RGB" else image)
        if not isinstance(image, np.ndarray):
            raise TypeError(f"image processor: image {i} is a {type(image).__name__}; pass PIL images or numpy "
                            "arrays (a prepared pixel_values Tensor goes to the net directly)")
        if image.ndim == 3 and image.shape[0] == 3:  # transformers reads channels first when axis 0 is 3
            image = image.transpose(1, 2, 0)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image processor: image {i} has shape {image.shape}; expected an RGB image "
                             "(H x W x 3 or 3 x H x W)")
        out.append(image)
    return out


def _pil_rescale_needed(image: np.ndarray) -> bool:
    """transformers' _rescale_for_pil_conversion: True for a float image in [0, 1] that is not integral."""
    if image.dtype == np.uint8:
        return False
    if np.allclose(image, image.astype(int)):
        if np.all(image >= 0) and np.all(image <= 255):
            return False
        raise ValueError(f"image processor: integral pixel values outside [0, 255] "
                         f"([{image.min()}, {image.max()}]) cannot be converted to uint8")
    if np.all(image >= 0) and np.all(image <= 1):
        return True
    raise ValueError(f"image processor: float pixel values outside [0, 1] ([{image.min()}, {image.max()}]) "
                     "cannot be converted to uint8")


def rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """transformers' rescale: float64 product, then float32."""
    return (image.astype(np.float64) * scale).astype(np.float32)


def resize(image: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    """H x W x 3 image resized by Pillow as transformers' resize (float [0, 1] images via truncated uint8)."""
    import PIL.Image

    scaled = _pil_rescale_needed(image)
    pixels = rescale(image, 255) if scaled else image
    out = np.array(PIL.Image.fromarray(pixels.astype(np.uint8)).resize((width, height), resample=resample))
    return rescale(out, 1 / 255) if scaled else out


def normalize(image: np.ndarray, mean: tuple, std: tuple) -> np.ndarray:
    """(image - mean) / std per channel, in the image's float dtype (uint8 -> float32), as transformers."""
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
    return (image - np.array(mean, dtype=image.dtype)) / np.array(std, dtype=image.dtype)


def center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """H x W x C center crop, zero padded (centred, padding rounded up on top / left) where the image is smaller."""
    h, w = image.shape[:2]
    if h < height or w < width:
        new_h, new_w = max(height, h), max(width, w)
        padded = np.zeros((new_h, new_w) + image.shape[2:], dtype=image.dtype)
        top, left = -(-(new_h - h) // 2), -(-(new_w - w) // 2)
        padded[top:top + h, left:left + w] = image
        image, h, w = padded, new_h, new_w
    top, left = (h - height) // 2, (w - width) // 2
    return image[top:top + height, left:left + width]


def shortest_edge_size(h: int, w: int, edge: int) -> tuple:
    """(height, width) with the shorter side `edge` and the longer one int(edge * long / short)."""
    if w <= h:
        return int(edge * h / w), edge
    return edge, int(edge * w / h)


def stack(arrays: list) -> Float[Tensor, "b 3 h w"]:
    """H x W x 3 arrays -> float32 [b, 3, h, w] Tensor."""
    return Tensor(np.stack([a.transpose(2, 0, 1) for a in arrays]).astype(np.float32), ms.float32)


# CLIP -----------------------------------------------------------------------------------------------

def preprocess(images: ImageInput, config: CLIPImageConfig = CLIPImageConfig()) -> Float[Tensor, "b 3 h w"]:
    """PIL / numpy image(s) -> float32 pixel_values [b, 3, crop_h, crop_w], equal to CLIPImageProcessor's."""
    out = []
    size = dict(config.size)
    for image in to_arrays(images, config.do_convert_rgb):
        if config.do_resize:
            h, w = (shortest_edge_size(*image.shape[:2], size["shortest_edge"]) if "shortest_edge" in size
                    else (size["height"], size["width"]))
            image = resize(image, h, w, config.resample)
        if config.do_center_crop:
            image = center_crop(image, *config.crop_size)
        if config.do_rescale:
            image = rescale(image, config.rescale_factor)
        if config.do_normalize:
            image = normalize(image, config.image_mean, config.image_std)
        out.append(image)
    if len({a.shape for a in out}) > 1:
        raise ValueError(f"CLIPImageProcessor: images of different sizes after preprocessing "
                         f"({sorted({a.shape for a in out})}); enable the center crop or pass one size")
    return stack(out)


def encode_image(image_encoder, image, config: CLIPImageConfig = CLIPImageConfig(),
                 num_images_per_prompt: int = 1) -> Float[Tensor, "b 1 p"]:
    """Image embeddings [b * num_images_per_prompt, 1, projection_dim] in float32 (diffusers' image-variation
    `_encode_image` without the CFG half, which is zeros): PIL / numpy images are preprocessed with `config`;
    a Tensor is taken as pixel_values."""
    pixels = image if isinstance(image, Tensor) else preprocess(image, config)
    if not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
        raise ValueError(f"num_images_per_prompt must be a positive int, got {num_images_per_prompt!r}")
    embeds = image_encoder(pixels)[1].astype(ms.float32)
    embeds = embeds.reshape(embeds.shape[0], 1, embeds.shape[-1])
    return ms.ops.repeat_interleave(embeds, num_images_per_prompt, 0) if num_images_per_prompt > 1 else embeds
