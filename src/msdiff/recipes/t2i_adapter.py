"""t2i_adapter: text-to-image guided by a condition image through a T2I-Adapter, for SD 1.x/2.x and SD-XL.

The composition of text_to_image plus two public steps: `adapter_image` (diffusers' _preprocess_adapter_image)
and `adapter_features` (the adapter run once per call, scaled and batched as diffusers does), whose result
enters the denoiser as an `Adapter`: the features are inputs of the (graph-mode compiled) guided step, added
inside the UNet's down blocks. Argument names are diffusers' StableDiffusionAdapterPipeline /
StableDiffusionXLAdapterPipeline ones.
"""
import weakref
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from .conditioning import default_guidance, default_hw, is_xl, make_denoiser, text_conditioning, uses_cfg
from .denoise import Adapter, denoise, make_schedule, resolve_sampler
from .steps import FiniteTracker, NoiseSource, _as_list, _numpy_image, _pil_array, _to_pil, finish, image_size, \
    prepare_latents


def _tensor_rows(image) -> Optional[np.ndarray]:
    """A condition image given as a (b, c, h, w) / (c, h, w) Tensor in [0, 1] (diffusers takes torch tensors as
    they are), or a list of them; else None."""
    items = image if isinstance(image, (list, tuple)) else [image]
    if not items or not all(isinstance(t, Tensor) for t in items):
        return None
    rows = [t.asnumpy().astype(np.float32) for t in items]
    return np.concatenate([r[None] if r.ndim == 3 else r for r in rows], axis=0)


def adapter_image(image, height: int, width: int, channels: int = 3) -> Float[Tensor, "b c h w"]:
    """Condition image(s) -> float32 (b, channels, height, width) in [0, 1] (diffusers' _preprocess_adapter_image).

    PIL / path images are resized (Lanczos) and taken as grayscale for 1-channel adapters, RGB otherwise;
    numpy H x W (x C) images (uint8 or [0, 1]) and (b, c, h, w) Tensors must already have the size height x width.
    """
    x = _tensor_rows(image)
    if x is None:
        mode = "L" if channels == 1 else "RGB"
        rows = []
        for img in _as_list(image):
            img = _to_pil(img)
            if isinstance(img, np.ndarray):
                a = _numpy_image(img)
                if a.ndim == 3 and a.shape[-1] == 1:
                    a = a[..., 0]
                if a.shape[:2] != (height, width):
                    raise ValueError(f"image: numpy image of size {a.shape[:2]} but height, width = "
                                     f"{(height, width)}; resize it first or pass a PIL image")
            else:
                a = _pil_array(img, height, width, mode)
            rows.append(a[..., None] if a.ndim == 2 else a)
        x = np.stack(rows).transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1:] != (channels, height, width):
        raise ValueError(f"condition image of shape {x.shape[1:]} (c, h, w), the adapter needs "
                         f"{(channels, height, width)}")
    return Tensor(x)


_JIT = weakref.WeakKeyDictionary()


def adapter_features(adapter, image: Float[Tensor, "r c h w"], batch: int, num_images_per_prompt: int = 1,
                     scale: float = 1.0, guidance: bool = False, mode: str = "pynative") -> tuple:
    """adapter(image) * scale, tiled to the `batch` generated images and doubled for classifier-free guidance
    (diffusers' adapter_state: one image for every row, or one per prompt repeated num_images_per_prompt times
    as a whole batch, i.e. [a, b, a, b] like diffusers' `repeat`)."""
    rows = image.shape[0]
    if rows == 1:
        copies = batch
    elif rows * num_images_per_prompt == batch:
        copies = num_images_per_prompt
    else:
        raise ValueError(f"{rows} condition images for {batch // num_images_per_prompt} prompts: give one image "
                         f"or one per prompt")
    if mode == "graph":
        if adapter not in _JIT:
            def run(x):
                return adapter(x)

            _JIT[adapter] = ms.jit(run)
        features = _JIT[adapter](image)
    else:
        features = adapter(image)
    out = ()
    for f in features:
        f = f * scale
        if copies > 1:
            f = mops.concat([f] * copies, axis=0)
        if guidance:
            f = mops.concat([f, f], axis=0)
        out = out + (f,)
    return out


def _default_size(image, height: Optional[int], width: Optional[int], factor: int) -> tuple:
    """diffusers' _default_height_width: the image's size rounded down to the adapter's downscale_factor."""
    if height is not None and width is not None:
        return height, width
    pre = _tensor_rows(image)
    h, w = pre.shape[2:] if pre is not None else image_size(image)
    return height or h - h % factor, width or w - w % factor


def _adapter_of(components, adapter):
    net = components.extra.get("adapter") if adapter is None else adapter
    if net is None:
        raise ValueError("t2i_adapter: the pipeline has no 'adapter' component; pass adapter=")
    if isinstance(net, (list, tuple)) or type(net).__name__ == "MultiAdapter":
        raise ValueError("MultiAdapter (several T2I-Adapters) is not supported by msdiff: pass one T2IAdapter")
    return net


def t2i_adapter(components, prompt=None, image=None, negative_prompt=None, *, num_inference_steps: int = 50,
                guidance_scale: Optional[float] = None, guidance_rescale: float = 0.0,
                height: Optional[int] = None, width: Optional[int] = None, num_images_per_prompt: int = 1,
                adapter_conditioning_scale: float = 1.0, adapter_conditioning_factor: float = 1.0, latents=None,
                clip_skip: Optional[int] = None, prompt_embeds: Optional[Tensor] = None,
                negative_prompt_embeds: Optional[Tensor] = None, pooled_prompt_embeds: Optional[Tensor] = None,
                negative_pooled_prompt_embeds: Optional[Tensor] = None, prompt_2=None, negative_prompt_2=None,
                original_size=None, crops_coords_top_left=(0, 0), target_size=None, negative_original_size=None,
                negative_crops_coords_top_left=None, negative_target_size=None,
                denoising_end: Optional[float] = None, output_type: str = "pil", seed: Optional[int] = None,
                sampler=None, noise=None, callback: Optional[Callable] = None, mode: str = "pynative",
                vae_dtype="float32", adapter=None):
    """Images from text and a condition image (diffusers' StableDiffusion[XL]AdapterPipeline).

    image: the condition image (PIL / path / numpy, or a (b, c, h, w) Tensor in [0, 1]); height and width
    default to its size rounded down to the adapter's downscale_factor. The adapter is components.extra["adapter"]
    unless `adapter` is given. adapter_conditioning_scale multiplies its features, which are used by the first
    int(num_inference_steps * adapter_conditioning_factor) net calls (the SD-XL pipeline's argument; for SD,
    which diffusers does not give one, factor 1 means every call). Other arguments as in text_to_image.
    """
    net = _adapter_of(components, adapter)
    if isinstance(adapter_conditioning_scale, (list, tuple)):
        raise ValueError("a list of adapter_conditioning_scale values is for MultiAdapter, which msdiff does not "
                         "support: pass one float")
    if image is None:
        raise ValueError("t2i_adapter needs image= (the condition image)")
    if not 0.0 <= adapter_conditioning_factor <= 1.0:
        raise ValueError(f"adapter_conditioning_factor must be in [0, 1], got {adapter_conditioning_factor}")
    g = default_guidance(components) if guidance_scale is None else guidance_scale
    noise_src, tracker = NoiseSource(seed, noise), FiniteTracker()
    height, width = default_hw(components, *_default_size(image, height, width, net.downscale_factor))
    cond = adapter_image(image, height, width, net.config.in_channels)
    emb = text_conditioning(components, prompt, negative_prompt, guidance=uses_cfg(components, g),
                            num_images_per_prompt=num_images_per_prompt, clip_skip=clip_skip,
                            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds,
                            pooled_prompt_embeds=pooled_prompt_embeds,
                            negative_pooled_prompt_embeds=negative_pooled_prompt_embeds, prompt_2=prompt_2,
                            negative_prompt_2=negative_prompt_2, tracker=tracker)
    batch = emb.prompt_embeds.shape[0]
    guided = emb.negative_prompt_embeds is not None
    features = adapter_features(net, cond, batch, num_images_per_prompt, float(adapter_conditioning_scale),
                                guided, mode)
    for i, f in enumerate(features):
        tracker.add(f"adapter feature {i}", f)

    smp = resolve_sampler(components, sampler)
    schedule = make_schedule(smp, num_inference_steps, denoising_end=denoising_end)
    steps = num_inference_steps if denoising_end is None else len(schedule)
    x = prepare_latents(components, batch, height, width, noise_src, latents, schedule.init_noise_sigma)
    tracker.add("initial latents", x)
    den = make_denoiser(components, emb, guidance_scale=g, guidance_rescale=guidance_rescale, height=height,
                        width=width, original_size=original_size, crops_coords_top_left=crops_coords_top_left,
                        target_size=target_size, negative_original_size=negative_original_size,
                        negative_crops_coords_top_left=negative_crops_coords_top_left,
                        negative_target_size=negative_target_size)
    # diffusers' XL pipeline counts calls against num_inference_steps (a PNDM run's extra first call shifts the
    # cut, and factor 1 drops the last call); its SD pipeline has no factor and feeds every call.
    calls = len(schedule) if adapter_conditioning_factor == 1.0 and not is_xl(components) else \
        int(steps * adapter_conditioning_factor)
    den = den._replace(adapter=Adapter(features, calls))
    x = denoise(den, smp, schedule, x, noise_src, mode, callback, tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)
