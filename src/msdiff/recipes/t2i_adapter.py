"""t2i_adapter: text-to-image guided by condition image(s) through one or several T2I-Adapters, SD 1.x/2.x and XL.

The composition of text_to_image plus public steps: `adapter_image` (diffusers' _preprocess_adapter_image),
`adapter_features` (the adapter run once per call, scaled and batched as diffusers does) and `adapter_pieces`
(one `Adapter` conditioning piece per adapter: the features are inputs of the (graph-mode compiled) guided step,
added inside the UNet's down blocks, several adapters summed as diffusers' MultiAdapter). Argument names are
diffusers' StableDiffusionAdapterPipeline / StableDiffusionXLAdapterPipeline ones.
"""
import weakref
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..conditioning import Adapter, make_schedule
from ..samplers import FiniteTracker, noise_source, resolve_sampler
from ..settings import resolve_mode
from .family import Family, diffusers_names
from .images import _as_list, _numpy_image, _pil_array, _to_pil, image_size
from .latents import finish, prepare_latents
from .sd import guidance_of, default_hw, is_xl, split_conditioning, text_conditioning, uses_cfg
from .sd_run import sd_denoise


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
                     scale: float = 1.0, guidance: bool = False, mode: Optional[str] = None) -> tuple:
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
    if resolve_mode(mode) == "graph":
        structure = hash(tuple(name for name, _ in adapter.parameters_and_names()))
        if _JIT.get(adapter, (None,))[0] != structure:
            def run(x):
                return adapter(x)

            _JIT[adapter] = (structure, ms.jit(run))
        features = _JIT[adapter][1](image)
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


def adapters_of(components, adapter=None) -> list:
    """The adapter(s) to run: `adapter` (one net or a list) or the pipeline's 'adapter' component."""
    net = components.extra.get("adapter") if adapter is None else adapter
    if net is None:
        raise ValueError("t2i_adapter: the pipeline has no 'adapter' component; pass adapter=")
    if type(net).__name__ == "MultiAdapter":
        raise ValueError("a diffusers MultiAdapter folder is not read by msdiff: pass adapter=[adapter, adapter2]")
    nets = list(net) if isinstance(net, (list, tuple)) else [net]
    if not nets:
        raise ValueError("adapter is an empty list")
    return nets


def adapter_pieces(adapter, image, *, height: int, width: int, batch: int, num_images_per_prompt: int,
                   guided: bool, conditioning_scale, calls: int, mode: Optional[str] = None) -> list:
    """One Adapter piece per adapter (a net or a list): its features for its condition image, times its scale (a
    value for all, or one per adapter), used by the first `calls` net calls."""
    nets = adapter if isinstance(adapter, (list, tuple)) else [adapter]
    n = len(nets)
    if n > 1 and (not isinstance(image, (list, tuple)) or len(image) != n):
        raise ValueError(f"{n} adapters need a list of {n} condition images (one per adapter)")
    images = list(image) if n > 1 else [image]
    scales = list(conditioning_scale) if isinstance(conditioning_scale, (list, tuple)) else [conditioning_scale] * n
    if len(scales) != n:
        raise ValueError(f"adapter_conditioning_scale has {len(scales)} entries for {n} adapters")
    if len({net.downscale_factor for net in nets}) > 1:
        raise ValueError("the adapters have different downscale factors: MultiAdapter needs equal ones")
    pieces = []
    for net, img, scale in zip(nets, images, scales):
        cond = adapter_image(img, height, width, net.config.in_channels)
        features = adapter_features(net, cond, batch, num_images_per_prompt, float(scale), guided, mode)
        pieces.append(Adapter(features, calls))
    return pieces


@diffusers_names
def t2i_adapter(components, prompt=None, image=None, negative_prompt=None, *, num_inference_steps: int = 50,
                guidance_scale: Optional[float] = None, guidance_rescale: float = 0.0,
                height: Optional[int] = None, width: Optional[int] = None, num_images_per_prompt: int = 1,
                adapter_conditioning_scale=1.0, adapter_conditioning_factor: float = 1.0, latents=None,
                denoising_end: Optional[float] = None, output_type: str = "pil", seed: Optional[int] = None,
                sampler=None, noise=None, callback: Optional[Callable] = None, mode: Optional[str] = None,
                vae_dtype="float32", adapter=None, **conditioning):
    """Images from text and condition image(s) (diffusers' StableDiffusion[XL]AdapterPipeline).

    image: the condition image (PIL / path / numpy, or a (b, c, h, w) Tensor in [0, 1]), or one per adapter when
    several run (adapter=[a, b]: diffusers' MultiAdapter); height and width default to the (first) image's size
    rounded down to the adapter's downscale_factor. The adapter is components.extra["adapter"] unless `adapter` is
    given. adapter_conditioning_scale (a value, or one per adapter) multiplies the features, which are used by the
    first int(num_inference_steps * adapter_conditioning_factor) net calls (the SD-XL pipeline's argument; for
    SD, which diffusers does not give one, factor 1 means every call). Other arguments as in text_to_image.
    """
    nets = adapters_of(components, adapter)
    if image is None:
        raise ValueError("t2i_adapter needs image= (the condition image)")
    if not 0.0 <= adapter_conditioning_factor <= 1.0:
        raise ValueError(f"adapter_conditioning_factor must be in [0, 1], got {adapter_conditioning_factor}")
    text, micro = split_conditioning("t2i_adapter", conditioning)
    g = guidance_of(components, guidance_scale)
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    first = image[0] if len(nets) > 1 and isinstance(image, (list, tuple)) else image
    height, width = default_hw(components, *_default_size(first, height, width, nets[0].downscale_factor))
    emb = text_conditioning(components, prompt, negative_prompt, text, guidance=uses_cfg(components, g),
                            num_images_per_prompt=num_images_per_prompt, tracker=tracker)
    batch = emb.prompt_embeds.shape[0]
    smp = resolve_sampler(components.scheduler, sampler)
    schedule = make_schedule(smp, num_inference_steps, denoising_end=denoising_end)
    steps = num_inference_steps if denoising_end is None else len(schedule)
    # diffusers' XL pipeline counts calls against num_inference_steps (a PNDM run's extra first call shifts the
    # cut, and factor 1 drops the last call); its SD pipeline has no factor and feeds every call.
    calls = len(schedule) if adapter_conditioning_factor == 1.0 and not is_xl(components) else \
        int(steps * adapter_conditioning_factor)
    pieces = adapter_pieces(nets if len(nets) > 1 else nets[0], image, height=height, width=width, batch=batch,
                            num_images_per_prompt=num_images_per_prompt,
                            guided=emb.negative_prompt_embeds is not None,
                            conditioning_scale=adapter_conditioning_scale, calls=calls, mode=mode)
    for i, piece in enumerate(pieces):
        for j, f in enumerate(piece.inputs[0]):
            tracker.add(f"adapter {i} feature {j}", f)
    x = prepare_latents(components, batch, height, width, noise_src, latents, schedule.init_noise_sigma)
    tracker.add("initial latents", x)
    x = sd_denoise(components, emb, micro, x, schedule, smp, noise_src, guidance_scale=g, height=height,
                   width=width, guidance_rescale=guidance_rescale, pieces=pieces, callback=callback, mode=mode,
                   tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)


FAMILIES = (Family("t2i_adapter", t2i_adapter, ("StableDiffusionAdapterPipeline", "StableDiffusionXLAdapterPipeline"),
                   {"prompt": "prompt", "negative_prompt": "negative_prompt", "guidance": "guidance_scale",
                    "sampler": "sampler", "size": "size", "image": "image",
                    "adapter_scale": "adapter_conditioning_scale"}, ("image",), steps=30,
                   cli_options=(("--adapter-scale", dict(type=float, default=None, help="T2I-Adapter conditioning "
                                                                                         "scale (default 1)")),),
                   help="--image is the condition image (required); --adapter-scale"),)
