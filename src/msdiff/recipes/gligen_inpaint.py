"""gligen_inpaint_image of both GLIGEN recipes (diffusers' StableDiffusionGLIGENPipeline and
StableDiffusionGLIGENTextImagePipeline with an inpainting UNet of 9 input channels, e.g.
masterful/gligen-1-4-inpainting-text-box): the boxes are regenerated, the rest of the image is kept.

As diffusers 0.35.2 does: the image is center-cropped to a square and resized (Lanczos) to the VAE's sample_size,
encoded (a posterior sample) and scaled; the keep mask is 1 outside every box at latent size (box x scaled by the
latent height, y by the width, truncated to ints, as its draw_inpaint_mask_from_boxes); before every call the
known region of the latents is replaced by the image latents noised to that call's level with fresh noise, and the
UNet gets [latents, image latents * keep, keep] as its input channels. With the 9-channel UNet diffusers draws 9
channels of initial latents, then replaces them at the first call by a fresh 4-channel draw that is not scaled by
the sampler's init sigma; msdiff draws the same arrays in the same order (the per-call noises of the blend right
after, before the sampler's own; diffusers interleaves them, which only matters when replaying recorded noise with
a stochastic sampler).
"""
import os

import numpy as np
from mindspore import Tensor
from mindspore import ops as mops

from ..conditioning import ExtraChannels
from ..conditioning.pieces import Piece
from ..samplers.core import add_noise
from .images import preprocess_image
from .latents import encode_image, initial_noise, vae_scale_factor


class InpaintBlend(Piece):
    """After call i, the known region (keep = 1) of the sampler's result becomes the image latents noised to call
    i + 1's level with that call's own noise (selected by a one-hot scale, exact in fp32); nothing after the last."""

    role = "post"

    def __init__(self, image_latents: Tensor, noises: Tensor, keep: Tensor, levels: np.ndarray):
        self.inputs = (image_latents, noises, keep)
        self.levels = np.asarray(levels, np.float32)
        self.n_scales = 3 + noises.shape[0]
        self.key = ("gligen_inpaint", noises.shape[0])

    def scales(self, i: int, n: int) -> tuple:
        pick = [0.0] * (self.n_scales - 3)
        if i + 1 >= n:
            return (0.0, 0.0, 0.0, *pick)
        pick[i + 1] = 1.0
        a, b = self.levels[i + 1]
        return (float(a), float(b), 1.0, *pick)

    def apply(self, x: Tensor, inputs: tuple, scales: Tensor) -> Tensor:
        image, noises, keep = inputs
        noise = (noises * scales[3:].reshape(-1, 1, 1, 1, 1)).sum(0)
        blended = (scales[0] * image + scales[1] * noise) * keep + x * (1 - keep)
        return scales[2] * blended + (1 - scales[2]) * x


def keep_mask(boxes, h: int, w: int) -> np.ndarray:
    """diffusers' draw_inpaint_mask_from_boxes at latent size (h, w): 1 outside the boxes -> [1, 1, h, w]."""
    mask = np.ones((h, w), np.float32)
    for box in boxes:
        x0, x1 = box[0] * h, box[2] * h
        y0, y1 = box[1] * w, box[3] * w
        mask[int(y0):int(y1), int(x0):int(x1)] = 0
    return mask[None, None]


def square_image(image, size: int):
    """The inpaint image as diffusers' target_size_center_crop: center square crop and Lanczos resize to size."""
    import PIL.Image

    from .frames import as_pil

    if isinstance(image, (str, os.PathLike, np.ndarray)):
        image = as_pil(image)
    if not isinstance(image, PIL.Image.Image):
        raise ValueError(f"gligen_inpaint_image must be a PIL image, an HxWx3 uint8 array or a path, got "
                         f"{type(image).__name__}")
    if image.size == (size, size):
        return image
    w, h = image.size
    if w != h:
        s = min(w, h)
        image = image.crop(((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2))
    return image.resize((size, size), PIL.Image.LANCZOS)


def check_inpaint(components, inpaint_image, height: int, width: int) -> None:
    """ValueError unless the UNet's input channels fit (9 with gligen_inpaint_image, the latent channels without)
    and height, width equal the VAE's sample_size for an inpaint image."""
    latent = components.vae.config.latent_channels
    got = components.unet.config.in_channels
    if inpaint_image is None:
        if got != latent:
            raise ValueError(f"this GLIGEN UNet takes {got} input channels (an inpainting one): pass "
                             f"gligen_inpaint_image")
        return
    if got != 2 * latent + 1:
        raise ValueError(f"gligen_inpaint_image needs an inpainting GLIGEN UNet ({2 * latent + 1} input channels); "
                         f"the loaded one takes {got}")
    size = components.vae.config.sample_size
    if (height, width) != (size, size):
        raise ValueError(f"gligen_inpaint_image: height and width must be the VAE's sample_size {size} (diffusers "
                         f"encodes the image at {size} x {size}), got {height} x {width}")


def inpaint_start(components, image, boxes, rows: int, height: int, width: int, noise, latents, schedule,
                  vae_dtype="float32") -> tuple:
    """(initial latents blended for call 0, (ExtraChannels, InpaintBlend)) for gligen_inpaint_image."""
    f = vae_scale_factor(components)
    latent = components.vae.config.latent_channels
    h, w = height // f, width // f
    if latents is None:
        noise.draw((rows, 2 * latent + 1, h, w))  # diffusers' 9-channel draw, replaced at its first call
    size = components.vae.config.sample_size
    z0 = encode_image(components, preprocess_image(square_image(image, size), size, size), noise, vae_dtype)
    if latents is None:
        x = noise.draw((rows, latent, h, w))
    else:
        x = initial_noise((rows, latent, h, w), noise, latents) * np.float32(schedule.init_noise_sigma)
    keep = Tensor(keep_mask(boxes, z0.shape[2], z0.shape[3]))
    noises = mops.stack([noise.draw(tuple(z0.shape)) for _ in range(len(schedule))])
    x = add_noise(schedule, z0, noises[0], 0) * keep + x * (1 - keep)
    extra = mops.cat((z0 * keep, keep), axis=1)
    return x, (ExtraChannels(extra), InpaintBlend(z0, noises, keep, schedule.noise_level))
