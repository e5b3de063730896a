"""DPT image preprocessing equal to transformers 4.57's `DPTImageProcessor` (numpy / PIL edge).

`preprocess(images, dpt_image_config(feature_extractor_dict))` gives the processor's `pixel_values`:
a Pillow resize to size (optionally keeping the aspect ratio and rounding to a multiple), rescale,
normalisation and optional zero padding to a multiple of `size_divisor`. As in transformers there is
no RGB conversion: PIL images must already be RGB. Steps shared with `clip_image`.
"""
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import Float
from mindspore import Tensor

from .clip_image import ImageInput, check_keys, normalize, rescale, resize, size_dict, stack, to_arrays

IMAGENET_STANDARD_MEAN = (0.5, 0.5, 0.5)
IMAGENET_STANDARD_STD = (0.5, 0.5, 0.5)

# Keys of a preprocessor_config.json that name the class or only affect segmentation labels.
_QUIET_KEYS = frozenset({"image_processor_type", "feature_extractor_type", "processor_class", "do_reduce_labels",
                         "reduce_labels"})


@dataclass(frozen=True)
class DPTImageConfig:
    """DPTImageProcessor settings; defaults are transformers'."""

    do_resize: bool = True
    size: tuple = (384, 384)  # (height, width)
    resample: int = 3  # PIL.Image.BICUBIC
    keep_aspect_ratio: bool = False
    ensure_multiple_of: int = 1
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple = IMAGENET_STANDARD_MEAN
    image_std: tuple = IMAGENET_STANDARD_STD
    do_pad: bool = False
    size_divisor: int = None


def dpt_image_config(d: dict) -> DPTImageConfig:
    """DPTImageConfig from a preprocessor_config.json dict (missing keys: transformers' defaults)."""
    fields = {f.name for f in dataclasses.fields(DPTImageConfig)}
    check_keys(d, fields, _QUIET_KEYS, "DPTImageProcessor")
    values = {k: d[k] for k in fields if k in d}
    size = size_dict(d.get("size", 384), True, "size")
    if set(size) != {"height", "width"}:
        raise ValueError(f"DPTImageProcessor: size={size!r} must hold 'height' and 'width'")
    values["size"] = (size["height"], size["width"])
    for key in ("image_mean", "image_std"):
        if key in d:
            values[key] = tuple(d[key]) if isinstance(d[key], (list, tuple)) else (d[key],) * 3
    c = DPTImageConfig(**values)
    if c.do_pad and not c.size_divisor:
        raise ValueError("DPTImageProcessor: do_pad needs a size_divisor")
    return c


def load_dpt_image_config(folder: "str | os.PathLike") -> DPTImageConfig:
    """DPTImageConfig from a feature_extractor / image processor folder's preprocessor_config.json."""
    path = Path(folder) / "preprocessor_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no preprocessor_config.json in {folder}")
    return dpt_image_config(json.loads(path.read_text()))


def _multiple(value: float, multiple: int) -> int:
    """transformers' constrain_to_multiple_of (Python rounding, never below 0)."""
    x = round(value / multiple) * multiple
    return math.ceil(value / multiple) * multiple if x < 0 else x


def output_size(h: int, w: int, c: DPTImageConfig) -> tuple:
    """(height, width) of the resize: the target, or with keep_aspect_ratio the scale closer to 1 for both sides."""
    sh, sw = c.size[0] / h, c.size[1] / w
    if c.keep_aspect_ratio:
        if abs(1 - sw) < abs(1 - sh):
            sh = sw
        else:
            sw = sh
    return _multiple(sh * h, c.ensure_multiple_of), _multiple(sw * w, c.ensure_multiple_of)


def _pad(image: np.ndarray, divisor: int) -> np.ndarray:
    """Zero-pad H and W up to multiples of divisor, the extra split floor / ceil around the image."""
    pads = []
    for n in image.shape[:2]:
        extra = math.ceil(n / divisor) * divisor - n
        pads.append((extra // 2, extra - extra // 2))
    return np.pad(image, pads + [(0, 0)])


def preprocess(images: ImageInput, config: DPTImageConfig = DPTImageConfig()) -> Float[Tensor, "b 3 h w"]:
    """PIL (RGB) / numpy image(s) -> float32 pixel_values [b, 3, h, w], equal to DPTImageProcessor's."""
    out = []
    for image in to_arrays(images, convert_rgb=False):
        if config.do_resize:
            image = resize(image, *output_size(*image.shape[:2], config), config.resample)
        if config.do_rescale:
            image = rescale(image, config.rescale_factor)
        if config.do_normalize:
            image = normalize(image, config.image_mean, config.image_std)
        if config.do_pad:
            image = _pad(image, config.size_divisor)
        out.append(image)
    if len({a.shape for a in out}) > 1:
        raise ValueError(f"DPTImageProcessor: images of different sizes after preprocessing "
                         f"({sorted({a.shape for a in out})}); resize them to one size")
    return stack(out)


# Depth maps as UNet conditioning ------------------------------------------------------------------

def _cubic_weights(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution weights (a = -0.75, as torch) of the 4 taps around each source position."""
    def near(x):
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def _bicubic_axis(x: np.ndarray, axis: int, out_len: int) -> np.ndarray:
    """Resize of one axis as torch's bicubic interpolate (align_corners=False, edge-clamped taps): source
    positions and weights in float32 as torch computes them (they move the result by ~1e-6), sums in float64."""
    n, f = x.shape[axis], np.float32
    src = (f(n) / f(out_len)) * (np.arange(out_len).astype(f) + f(0.5)) - f(0.5)
    base = np.floor(src)
    w = _cubic_weights((src - base).astype(f), a=f(-0.75)).astype(np.float64)
    idx = np.clip(base[:, None].astype(np.int64) + np.arange(-1, 3), 0, n - 1)
    taps = np.take(np.moveaxis(x, axis, -1), idx, axis=-1)  # (..., out_len, 4)
    return np.moveaxis((taps * w).sum(-1), -1, axis)


def depth_condition(depth, height: int, width: int, vae_scale_factor: int = 8) -> Float[Tensor, "b 1 h w"]:
    """Predicted depth [b, H, W] -> the depth2img UNet's extra channel [b, 1, height/f, width/f] in [-1, 1]:
    bicubic resize (torch's, align_corners=False) and per-image min-max scaling, as diffusers' prepare_depth_map."""
    d = np.asarray(depth.asnumpy() if isinstance(depth, Tensor) else depth, np.float64)
    if d.ndim != 3:
        raise ValueError(f"depth_map must be [batch, height, width], got shape {d.shape}")
    h, w = height // vae_scale_factor, width // vae_scale_factor
    if h < 1 or w < 1:
        raise ValueError(f"depth_map: image size {height}x{width} is smaller than the VAE factor {vae_scale_factor}")
    d = _bicubic_axis(_bicubic_axis(d.astype(np.float32).astype(np.float64), 1, h), 2, w)[:, None]
    lo, hi = d.min(axis=(1, 2, 3), keepdims=True), d.max(axis=(1, 2, 3), keepdims=True)
    if np.any(hi == lo):
        raise ValueError("depth_map: a depth map is constant (max == min); it cannot be scaled to [-1, 1]")
    return Tensor((2.0 * (d - lo) / (hi - lo) - 1.0).astype(np.float32))
