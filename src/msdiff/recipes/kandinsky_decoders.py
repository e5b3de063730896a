"""Kandinsky 2.2 decoder variants (diffusers' KandinskyV22Img2ImgPipeline, KandinskyV22InpaintPipeline,
KandinskyV22ControlnetPipeline, KandinskyV22ControlnetImg2ImgPipeline) on the one loop of recipes.kandinsky.

img2img: the MoVQ's unquantized encoding of the image, noised to `strength` (no scaling factor, as diffusers).
Inpainting: a 9-channel UNet sees [latents, masked image latents, kept-region mask]; after every step the kept
region is the first image's latents noised to the next step (conditioning.Blend), and once more at the end.
ControlNet: the hint image goes to the UNet's image_hint embedding, batched like the embeddings.
"""
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..conditioning import Blend, ExtraChannels, make_schedule, start_from_image
from ..samplers import noise_source, resolve_sampler
from .family import Family, diffusers_names
from .images import _as_list, _pil_array, _to_pil, preprocess_image
from .kandinsky import (_DEFAULT_SCHEDULER, DECODER_OPTIONS, cli_prepare, denoise, image_embeds_batch, movq_finish,
                        movq_in, movq_latent_size, movq_of, movq_scale_factor)
from .latents import initial_noise


def kandinsky_image(image, height: int, width: int) -> Float[Tensor, "b 3 h w"]:
    """Images -> [-1, 1] float32 (b, 3, height, width): PIL resized with bicubic, reducing_gap 1 (the Kandinsky
    pipelines' image processor); numpy H x W x 3 must already have the size."""
    import PIL.Image

    rows = []
    for img in _as_list(image):
        img = _to_pil(img)
        if hasattr(img, "convert"):
            img = img.convert("RGB")
            if img.size != (width, height):
                img = img.resize((width, height), resample=PIL.Image.BICUBIC, reducing_gap=1)
            img = np.asarray(img)
        rows.append(img)
    return preprocess_image(rows, height, width)


def _hint(hint, num_images_per_prompt: int) -> Tensor:
    if hint is None:
        raise ValueError("kandinsky ControlNet: hint (a [batch, 3, h, w] image in [0, 1]) is required")
    h = hint if isinstance(hint, Tensor) else Tensor(np.asarray(hint, np.float32))
    if h.ndim != 4 or h.shape[1] != 3:
        raise ValueError(f"kandinsky ControlNet: hint must be [batch, 3, h, w], got shape {tuple(h.shape)}")
    return mops.repeat_interleave(h.astype(ms.float32), num_images_per_prompt, 0)


def _guided_hint(hint: Optional[Tensor], guided: bool) -> Optional[Tensor]:
    return None if hint is None else mops.concat([hint, hint], axis=0) if guided else hint


def _img2img(components, image_embeds, image, negative_image_embeds, hint, *, height, width, num_inference_steps,
             guidance_scale, strength, num_images_per_prompt, seed, noise, sampler, callback, mode, output_type,
             what):
    movq = movq_of(components)
    embeds, guided = image_embeds_batch(image_embeds, negative_image_embeds, num_images_per_prompt, guidance_scale,
                                        what)
    factor = movq_scale_factor(movq)
    height, width = height - height % factor, width - width % factor
    pixels = kandinsky_image(image, height, width)
    latents = movq_in(components).encode(pixels).astype(ms.float32)
    latents = mops.repeat_interleave(latents, num_images_per_prompt, 0)
    noise_src = noise_source(seed, noise)
    smp = resolve_sampler(getattr(components, "scheduler", None), sampler, default=_DEFAULT_SCHEDULER)
    schedule, x = start_from_image(smp, num_inference_steps, strength, latents, noise_src.draw(tuple(latents.shape)))
    x = denoise(components, embeds, x, schedule, smp, noise_src, guidance_scale=guidance_scale,
                hint=_guided_hint(hint, guided), callback=callback, mode=mode)
    return movq_finish(components, x, output_type, what)


@diffusers_names
def kandinsky_v22_img2img(components, image_embeds, image, negative_image_embeds=None, *, height: int = 512,
                          width: int = 512, num_inference_steps: int = 100, guidance_scale: float = 4.0,
                          strength: float = 0.3, num_images_per_prompt: int = 1, seed: Optional[int] = None,
                          noise=None, sampler=None, callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None,
                          mode: Optional[str] = None, output_type: str = "pil"):
    """Images from CLIP image embeddings, starting from `image` noised to `strength` (diffusers'
    KandinskyV22Img2ImgPipeline)."""
    return _img2img(components, image_embeds, image, negative_image_embeds, None, height=height, width=width,
                    num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, strength=strength,
                    num_images_per_prompt=num_images_per_prompt, seed=seed, noise=noise, sampler=sampler,
                    callback=callback, mode=mode, output_type=output_type, what="kandinsky_v22_img2img")


@diffusers_names
def kandinsky_v22_controlnet_img2img(components, image_embeds, image, negative_image_embeds=None, hint=None, *,
                                     height: int = 512, width: int = 512, num_inference_steps: int = 100,
                                     guidance_scale: float = 4.0, strength: float = 0.3,
                                     num_images_per_prompt: int = 1, seed: Optional[int] = None, noise=None,
                                     sampler=None, callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None,
                                     mode: Optional[str] = None, output_type: str = "pil"):
    """img2img guided by a hint image (e.g. a depth map) through the UNet's image_hint embedding (diffusers'
    KandinskyV22ControlnetImg2ImgPipeline)."""
    return _img2img(components, image_embeds, image, negative_image_embeds, _hint(hint, num_images_per_prompt),
                    height=height, width=width, num_inference_steps=num_inference_steps,
                    guidance_scale=guidance_scale, strength=strength, num_images_per_prompt=num_images_per_prompt,
                    seed=seed, noise=noise, sampler=sampler, callback=callback, mode=mode, output_type=output_type,
                    what="kandinsky_v22_controlnet_img2img")


@diffusers_names
def kandinsky_v22_controlnet(components, image_embeds, negative_image_embeds=None, hint=None, *, height: int = 512,
                             width: int = 512, num_inference_steps: int = 100, guidance_scale: float = 4.0,
                             num_images_per_prompt: int = 1, seed: Optional[int] = None, noise=None,
                             latents: Optional[Float[Tensor, "b c h w"]] = None, sampler=None,
                             callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None,
                             mode: Optional[str] = None, output_type: str = "pil"):
    """Images from CLIP image embeddings and a hint image (diffusers' KandinskyV22ControlnetPipeline)."""
    movq = movq_of(components)
    embeds, guided = image_embeds_batch(image_embeds, negative_image_embeds, num_images_per_prompt, guidance_scale,
                                        "kandinsky_v22_controlnet")
    hint = _hint(hint, num_images_per_prompt)
    h, w = movq_latent_size(height, width, movq_scale_factor(movq))
    noise_src = noise_source(seed, noise)
    smp = resolve_sampler(getattr(components, "scheduler", None), sampler, default=_DEFAULT_SCHEDULER)
    schedule = smp.schedule(num_inference_steps)
    x = initial_noise((hint.shape[0], movq.config.latent_channels, h, w), noise_src, latents)
    x = x * np.float32(schedule.init_noise_sigma)
    x = denoise(components, embeds, x, schedule, smp, noise_src, guidance_scale=guidance_scale,
                hint=_guided_hint(hint, guided), callback=callback, mode=mode)
    return movq_finish(components, x, output_type, "kandinsky_v22_controlnet")


def erode_kept(mask: np.ndarray) -> np.ndarray:
    """diffusers' Kandinsky prepare_mask: every repainted (0) pixel of the kept-region mask [b, 1, h, w] also
    clears its neighbours up, left, up-left, down, right and down-right (the other two diagonals stay)."""
    out = mask.copy()
    for b in range(mask.shape[0]):
        old = mask[b, 0]
        for i, j in zip(*np.nonzero(old != 1)):
            for di, dj in ((-1, 0), (0, -1), (-1, -1), (1, 0), (0, 1), (1, 1)):
                y, x = i + di, j + dj
                if 0 <= y < old.shape[0] and 0 <= x < old.shape[1]:
                    out[b, 0, y, x] = 0
    return out


def _kept_mask(mask_image, height: int, width: int, latent_hw: tuple) -> np.ndarray:
    """1 = keep, at latent size: the mask resized with Lanczos, thresholded at 0.5, inverted, nearest-downsampled
    and eroded (diffusers' prepare_mask_and_masked_image + interpolate + prepare_mask)."""
    rows = []
    for m in _as_list(mask_image):
        m = _to_pil(m)
        if isinstance(m, Tensor):
            m = m.asnumpy()
        if isinstance(m, np.ndarray):
            a = m.astype(np.float32) / (255.0 if m.dtype == np.uint8 else 1.0)
            a = a.mean(-1) if a.ndim == 3 else a
            if a.shape != (height, width):
                raise ValueError(f"mask_image: numpy mask of size {a.shape} but height, width = {(height, width)}")
        else:
            a = _pil_array(m, height, width, "L")
        rows.append(np.where(a < 0.5, 0.0, 1.0).astype(np.float32))
    keep = 1.0 - np.stack(rows)[:, None]
    ys = np.floor(np.arange(latent_hw[0]) * (height / latent_hw[0])).astype(np.int64)
    xs = np.floor(np.arange(latent_hw[1]) * (width / latent_hw[1])).astype(np.int64)
    return erode_kept(keep[:, :, ys][:, :, :, xs]).astype(np.float32)


@diffusers_names
def kandinsky_v22_inpaint(components, image_embeds, image, mask_image, negative_image_embeds=None, *,
                          height: int = 512, width: int = 512, num_inference_steps: int = 100,
                          guidance_scale: float = 4.0, num_images_per_prompt: int = 1, seed: Optional[int] = None,
                          noise=None, latents: Optional[Float[Tensor, "b c h w"]] = None, sampler=None,
                          callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None,
                          mode: Optional[str] = None, output_type: str = "pil"):
    """Repaint the white region of `mask_image` from CLIP image embeddings (diffusers'
    KandinskyV22InpaintPipeline: white repainted, black kept)."""
    movq = movq_of(components)
    embeds, _ = image_embeds_batch(image_embeds, negative_image_embeds, num_images_per_prompt, guidance_scale,
                                   "kandinsky_v22_inpaint")
    b = embeds.shape[0] // (2 if guidance_scale > 1.0 else 1)
    image_latents = movq_in(components).encode(kandinsky_image(image, height, width)).astype(ms.float32)
    keep = Tensor(_kept_mask(mask_image, height, width, tuple(image_latents.shape[-2:])))
    if keep.shape[0] != image_latents.shape[0]:
        raise ValueError(f"kandinsky_v22_inpaint: {keep.shape[0]} masks for {image_latents.shape[0]} images")
    extra = mops.concat([image_latents * keep, keep], axis=1)
    extra = mops.repeat_interleave(extra, num_images_per_prompt, 0)
    h, w = movq_latent_size(height, width, movq_scale_factor(movq))
    noise_src = noise_source(seed, noise)
    smp = resolve_sampler(getattr(components, "scheduler", None), sampler, default=_DEFAULT_SCHEDULER)
    schedule = make_schedule(smp, num_inference_steps)
    x = initial_noise((b, movq.config.latent_channels, h, w), noise_src, latents)
    x = x * np.float32(schedule.init_noise_sigma)
    first, kept = image_latents[:1], keep[:1]
    blend = Blend(first, x, 1 - kept, schedule)
    x = denoise(components, embeds, x, schedule, smp, noise_src, guidance_scale=guidance_scale,
                pieces=(ExtraChannels(extra), blend), callback=callback, mode=mode)
    x = kept * first + (1 - kept) * x
    return movq_finish(components, x, output_type, "kandinsky_v22_inpaint")


_IMAGE = {"image": "image", "strength": "strength"}
FAMILIES = (
    Family("kandinsky_v22_img2img", kandinsky_v22_img2img, ("KandinskyV22Img2ImgPipeline",),
           {**DECODER_OPTIONS, **_IMAGE}, ("prompt", "image"), steps=100, prepare=cli_prepare(kandinsky_v22_img2img),
           help="Kandinsky prior of --prompt, then the decoder from --image at --strength (default 0.3)"),
    Family("kandinsky_v22_inpaint", kandinsky_v22_inpaint, ("KandinskyV22InpaintPipeline",),
           {**DECODER_OPTIONS, "image": "image", "mask": "mask_image"}, ("prompt", "image", "mask"), steps=100,
           prepare=cli_prepare(kandinsky_v22_inpaint), help="Kandinsky prior of --prompt, then --mask's white "
           "region of --image repainted"),
    Family("kandinsky_v22_controlnet", kandinsky_v22_controlnet, ("KandinskyV22ControlnetPipeline",),
           {**DECODER_OPTIONS, "control_image": "hint"}, ("prompt", "control_image"), steps=100,
           prepare=cli_prepare(kandinsky_v22_controlnet), help="Kandinsky prior of --prompt, then the decoder "
           "guided by --control-image (the hint, e.g. a depth map)"),
    Family("kandinsky_v22_controlnet_img2img", kandinsky_v22_controlnet_img2img,
           ("KandinskyV22ControlnetImg2ImgPipeline",), {**DECODER_OPTIONS, **_IMAGE, "control_image": "hint"},
           ("prompt", "image", "control_image"), steps=100, prepare=cli_prepare(kandinsky_v22_controlnet_img2img),
           help="Kandinsky ControlNet from --image at --strength with --control-image as the hint"),
)
