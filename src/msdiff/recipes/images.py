"""Image edges of a recipe: PIL / numpy / path inputs -> float32 Tensors, and decoded Tensors -> images."""
import os
from typing import Optional, Sequence, Union

import numpy as np
from jaxtyping import Float
from mindspore import Tensor
import mindspore as ms
from mindspore import ops as mops

ImageInput = Union["PIL.Image.Image", np.ndarray, str, os.PathLike, Tensor, Sequence]


def _to_pil(image):
    import PIL.Image

    if isinstance(image, (str, os.PathLike)):
        return PIL.Image.open(image)
    return image


def _as_list(image) -> list:
    if isinstance(image, (list, tuple)):
        return list(image)
    if isinstance(image, np.ndarray) and image.ndim == 4:
        return list(image)
    return [image]


_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def to_8bit(img):
    """16-bit (or 32-bit integer) PIL images scaled to 8 bits by Pillow; a plain convert would saturate them
    (mid-gray 32768 would become white)."""
    if img.mode in _HIGH_DEPTH:
        return img.convert("I").point(lambda v: v / 257).convert("L")
    return img


def _pil_array(img, height: Optional[int], width: Optional[int], mode: str) -> np.ndarray:
    """PIL image -> float32 H x W (x C) in [0, 1], resized with Lanczos as diffusers' VaeImageProcessor."""
    import PIL.Image

    img = to_8bit(img).convert(mode)
    if (width, height) != img.size:
        img = img.resize((width, height), resample=PIL.Image.LANCZOS)
    return np.asarray(img).astype(np.float32) / np.float32(255.0)


def _numpy_image(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    return a.astype(np.float32)


def image_size(image: ImageInput) -> tuple:
    """(height, width) in pixels of a PIL / numpy (H W C, uint8 or [0, 1]) / path image (first of a list)."""
    first = _to_pil(_as_list(image)[0])
    if hasattr(first, "size") and not isinstance(first, (np.ndarray, Tensor)):
        return first.size[1], first.size[0]
    a = first.asnumpy() if isinstance(first, Tensor) else np.asarray(first)
    return a.shape[0], a.shape[1]


def default_size(image: ImageInput, height: Optional[int], width: Optional[int], factor: int) -> tuple:
    """diffusers' get_default_height_width: the image's size, rounded down to a multiple of factor."""
    h, w = image_size(image)
    height, width = height or h, width or w
    return height - height % factor, width - width % factor


def is_latent_image(image) -> bool:
    """True for a Tensor / array shaped (b, 4, h, w): latents passed as the image (refiner hand-off)."""
    if isinstance(image, (Tensor, np.ndarray)) and image.ndim == 4:
        return image.shape[1] == 4
    return False


def preprocess_image(image: ImageInput, height: int, width: int, normalize: bool = True) -> Float[Tensor, "b 3 h w"]:
    """PIL / numpy / path image(s) -> float32 (b, 3, height, width) in [-1, 1] (diffusers' VaeImageProcessor),
    or in [0, 1] with normalize=False (its do_normalize=False, e.g. ControlNet control images)."""
    rows = []
    for img in _as_list(image):
        img = _to_pil(img)
        if isinstance(img, Tensor):
            img = img.asnumpy()
        if isinstance(img, np.ndarray):
            a = _numpy_image(img)
            if a.ndim != 3 or a.shape[-1] != 3:
                raise ValueError(f"image: a numpy image must be H x W x 3 (uint8 or float in [0, 1]), got {a.shape}")
            if a.shape[:2] != (height, width):
                raise ValueError(f"image: numpy image of size {a.shape[:2]} but height, width = {(height, width)}; "
                                 f"resize it first or pass a PIL image")
        else:
            a = _pil_array(img, height, width, "RGB")
        rows.append(a)
    x = np.stack(rows).transpose(0, 3, 1, 2)
    return Tensor(np.float32(2.0) * x - np.float32(1.0) if normalize else x)


def preprocess_mask(mask_image: ImageInput, height: int, width: int,
                    image_hw: Optional[tuple] = None) -> Float[Tensor, "b 1 h w"]:
    """Mask image(s) -> binary float32 (b, 1, height, width), 1 = repaint (diffusers' mask processor).

    ValueError if the mask's size differs from image_hw (the input image's size) or height/width.
    """
    expect = image_hw or (height, width)
    got = image_size(mask_image)
    if tuple(got) != tuple(expect):
        raise ValueError(f"mask_image has size {got[0]}x{got[1]} (h x w) but the image is {expect[0]}x{expect[1]}; "
                         f"give a mask of the image's size")
    rows = []
    for m in _as_list(mask_image):
        m = _to_pil(m)
        if isinstance(m, Tensor):
            m = m.asnumpy()
        if isinstance(m, np.ndarray):
            a = _numpy_image(m)
            a = a.mean(-1) if a.ndim == 3 else a
            if a.shape != (height, width):
                raise ValueError(f"mask_image: numpy mask of size {a.shape} but height, width = {(height, width)}")
        else:
            a = _pil_array(m, height, width, "L")
        rows.append(np.where(a < 0.5, 0.0, 1.0).astype(np.float32))
    return Tensor(np.stack(rows)[:, None])


def postprocess(image: Float[Tensor, "b 3 h w"], output_type: str = "pil"):
    """Decoded image in [-1, 1] -> np.ndarray (b, h, w, 3) in [0, 1] ("np") or a list of PIL images ("pil")."""
    x = mops.clamp(image.astype(ms.float32) / 2 + 0.5, 0.0, 1.0).asnumpy().transpose(0, 2, 3, 1)
    if output_type == "np":
        return x
    if output_type == "pil":
        import PIL.Image

        return [PIL.Image.fromarray(v) for v in (x * 255).round().astype(np.uint8)]
    raise ValueError(f"output_type must be 'pil', 'np' or 'latent', got {output_type!r}")
