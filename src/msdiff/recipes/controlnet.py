"""ControlNet recipes for SD 1.x/2.x and SD-XL: text-to-image, img2img and inpainting, one or several ControlNets.

Each is the matching plain recipe's start (noise, `image_start`, `inpaint_start`) plus `control_pieces`: one
`ControlNet` conditioning piece per net, run inside the same (graph-mode compiled) guided step as the UNet, their
residuals summed (diffusers' MultiControlNetModel). A T2I-Adapter can be added to the same run (`adapter=`),
which no diffusers pipeline offers. Argument names are diffusers' StableDiffusion[XL]ControlNet[Img2Img|Inpaint]
Pipeline ones.
"""
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..conditioning import ControlNet, make_schedule
from ..samplers import FiniteTracker, noise_source, resolve_sampler
from .family import Family, diffusers_names
from .images import default_size, preprocess_image
from .inpaint import inpaint_size, inpaint_start
from .latents import finish, prepare_latents, vae_scale_factor
from .sd import guidance_of, default_hw, split_conditioning, text_conditioning, uses_aesthetics, uses_cfg
from .sd_run import sd_denoise
from .t2i_adapter import adapter_pieces
from .text_to_image import image_start


def _preprocessed(image) -> Optional[np.ndarray]:
    """A control image given as a (b, c, h, w) Tensor in [0, 1] (as diffusers takes torch tensors), else None."""
    if isinstance(image, Tensor) and image.ndim == 4:
        return image.asnumpy().astype(np.float32)
    return None


def control_image(image, height: int, width: int, batch: int, num_images_per_prompt: int = 1,
                  channels: int = 3) -> Float[Tensor, "b c h w"]:
    """Control image(s) -> float32 (batch, channels, height, width) in [0, 1], resized, not normalised, one row
    per generated image (diffusers' ControlNet prepare_image without the guidance copy).

    PIL / path images are converted to RGB and resized (Lanczos); numpy (b x) H x W x 3 images and
    (b, c, h, w) Tensors must already have the size height x width.
    """
    pre = _preprocessed(image)
    if pre is None:
        if channels != 3:
            raise ValueError(f"the ControlNet takes {channels}-channel control images: pass a (b, {channels}, "
                             f"{height}, {width}) array in [0, 1]")
        x = preprocess_image(image, height, width, normalize=False)
    else:
        if pre.shape[1:] != (channels, height, width):
            raise ValueError(f"control image of shape {pre.shape[1:]} (c, h, w), the ControlNet needs "
                             f"{(channels, height, width)}")
        x = Tensor(pre)
    rows = x.shape[0]
    if rows != 1 and rows * num_images_per_prompt != batch:
        raise ValueError(f"{rows} control images for {batch // num_images_per_prompt} prompts: give one image or "
                         f"one per prompt")
    return mops.repeat_interleave(x, batch if rows == 1 else num_images_per_prompt, 0)


def _per_net(value, n: int, name: str) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries for {n} ControlNets")
    return values


def controlnets_of(components, controlnet=None) -> list:
    """The ControlNet(s) to run: `controlnet` (one net or a list) or the pipeline's 'controlnet' component."""
    net = components.extra.get("controlnet") if controlnet is None else controlnet
    if net is None:
        raise ValueError("the pipeline has no 'controlnet' component; pass controlnet=")
    nets = list(net) if isinstance(net, (list, tuple)) else [net]
    if not nets:
        raise ValueError("controlnet is an empty list")
    return nets


def control_size(components, image, nets: list, height: Optional[int], width: Optional[int]) -> tuple:
    """(height, width): the first control image's size rounded down to the VAE factor, unless given."""
    if len(nets) > 1 and (not isinstance(image, (list, tuple)) or len(image) != len(nets)):
        raise ValueError(f"{len(nets)} ControlNets need a list of {len(nets)} control images (one per ControlNet)")
    first = image[0] if len(nets) > 1 else image
    pre = _preprocessed(first)
    if pre is None:
        height, width = default_size(first, height, width, vae_scale_factor(components))
    else:
        height, width = height or pre.shape[2], width or pre.shape[3]
    return default_hw(components, height, width)


def control_pieces(nets: list, images, *, height: int, width: int, batch: int, num_images_per_prompt: int,
                   guided: bool, conditioning_scale, guidance_start, guidance_end, guess_mode: bool) -> list:
    """One ControlNet piece per net: its control image batched for the run (doubled for guidance unless guess
    mode), its scale and guidance window (a value for all nets, or a list with one per net)."""
    n = len(nets)
    if n > 1 and (not isinstance(images, (list, tuple)) or len(images) != n):
        raise ValueError(f"{n} ControlNets need a list of {n} control images (one per ControlNet)")
    images = list(images) if n > 1 else [images]
    pieces = []
    for net, img, scale, start, end in zip(nets, images, _per_net(conditioning_scale, n, "controlnet_conditioning_"
                                                                   "scale"),
                                           _per_net(guidance_start, n, "control_guidance_start"),
                                           _per_net(guidance_end, n, "control_guidance_end")):
        cond = control_image(img, height, width, batch, num_images_per_prompt, net.config.conditioning_channels)
        if guided and not guess_mode:
            cond = mops.concat([cond, cond], axis=0)
        pieces.append(ControlNet(net, cond.astype(ms.float32), float(scale), float(start), float(end), guess_mode))
    return pieces


_SHARED = ("prompt", "negative_prompt", "height", "width", "num_inference_steps", "guidance_scale",
           "guidance_rescale", "num_images_per_prompt", "controlnet_conditioning_scale", "guess_mode",
           "control_guidance_start", "control_guidance_end", "output_type", "seed", "sampler", "noise", "callback",
           "mode", "vae_dtype", "controlnet", "conditioning")
_ADAPTER = {"adapter": None, "adapter_image": None, "adapter_conditioning_scale": 1.0, "strength": 1.0}


def _shared(names: dict) -> dict:
    """The arguments every ControlNet recipe hands to `_run` (from the recipe's locals), adapter ones defaulted."""
    args = {k: names[k] for k in _SHARED}
    args.update({k: names.get(k, v) for k, v in _ADAPTER.items()})
    return args


def _run(components, prompt, negative_prompt, *, recipe: str, control, start: Callable, height, width,
         num_inference_steps, strength, guidance_scale, guidance_rescale, num_images_per_prompt,
         controlnet_conditioning_scale, guess_mode, control_guidance_start, control_guidance_end, output_type, seed,
         sampler, noise, callback, mode, vae_dtype, controlnet, adapter, adapter_image, adapter_conditioning_scale,
         conditioning: dict, aesthetics: bool):
    """The ControlNet recipes' shared body: prompt, schedule, `start` (-> latents, extra pieces), control pieces,
    optional adapter pieces, the guided loop, decode."""
    text, micro = split_conditioning(recipe, conditioning)
    nets = controlnets_of(components, controlnet)
    if control is None:
        raise ValueError(f"{recipe} needs the control image ({'image' if recipe == 'controlnet' else 'control_image'}"
                         f"=)")
    g = guidance_of(components, guidance_scale)
    guess_mode = bool(guess_mode or nets[0].config.global_pool_conditions)
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    emb = text_conditioning(components, prompt, negative_prompt, text, guidance=uses_cfg(components, g),
                            num_images_per_prompt=num_images_per_prompt, tracker=tracker)
    batch = emb.prompt_embeds.shape[0]
    guided = emb.negative_prompt_embeds is not None
    smp = resolve_sampler(components.scheduler, sampler)
    schedule = make_schedule(smp, num_inference_steps, strength)
    pieces = control_pieces(nets, control, height=height, width=width, batch=batch,
                            num_images_per_prompt=num_images_per_prompt, guided=guided,
                            conditioning_scale=controlnet_conditioning_scale, guidance_start=control_guidance_start,
                            guidance_end=control_guidance_end, guess_mode=guess_mode)
    x, extra = start(emb, schedule, noise_src)
    tracker.add("initial latents", x)
    if adapter is not None:
        extra = extra + adapter_pieces(adapter, adapter_image, height=height, width=width, batch=batch,
                                       num_images_per_prompt=num_images_per_prompt, guided=guided,
                                       conditioning_scale=adapter_conditioning_scale, calls=len(schedule),
                                       mode=mode)
    x = sd_denoise(components, emb, micro, x, schedule, smp, noise_src, guidance_scale=g, height=height,
                   width=width, guidance_rescale=guidance_rescale, pieces=pieces + extra, aesthetics=aesthetics,
                   callback=callback, mode=mode, tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)


@diffusers_names
def controlnet(components, prompt=None, image=None, negative_prompt=None, *, num_inference_steps: int = 50,
               guidance_scale: Optional[float] = None, guidance_rescale: float = 0.0, height: Optional[int] = None,
               width: Optional[int] = None, num_images_per_prompt: int = 1, controlnet_conditioning_scale=1.0,
               guess_mode: bool = False, control_guidance_start=0.0, control_guidance_end=1.0, latents=None,
               output_type: str = "pil", seed: Optional[int] = None, sampler=None, noise=None,
               callback: Optional[Callable] = None, mode: Optional[str] = None, vae_dtype="float32", controlnet=None,
               adapter=None, adapter_image=None, adapter_conditioning_scale=1.0, **conditioning):
    """Images from text and control image(s) (diffusers' StableDiffusion[XL]ControlNetPipeline).

    image: the control image (PIL / path / numpy H x W x 3, or a (b, c, h, w) Tensor in [0, 1]), or one per
    ControlNet when several run (controlnet=[net, net2], components.extra["controlnet"] by default);
    height and width default to the (first) image's size rounded down to the VAE scale factor.
    controlnet_conditioning_scale multiplies the residuals, used only for the calls in
    [control_guidance_start, control_guidance_end) (each a value, or a list with one per ControlNet); guess_mode
    (or a global_pool_conditions ControlNet) feeds the ControlNets only the conditional half and scales their
    residuals from 0.1 to 1. adapter / adapter_image / adapter_conditioning_scale add T2I-Adapter features to the
    same run. Other arguments as in text_to_image.
    """
    nets = controlnets_of(components, controlnet)
    height, width = control_size(components, image, nets, height, width) if image is not None else (height, width)

    def start(emb, schedule, noise_src):
        return prepare_latents(components, emb.prompt_embeds.shape[0], height, width, noise_src, latents,
                               schedule.init_noise_sigma), []

    return _run(components, recipe="controlnet", control=image, start=start, aesthetics=False,
                **_shared(locals()))


@diffusers_names
def controlnet_img2img(components, prompt=None, image=None, control_image=None, negative_prompt=None, *,
                       strength: float = 0.8, num_inference_steps: int = 50, guidance_scale: Optional[float] = None,
                       guidance_rescale: float = 0.0, height: Optional[int] = None, width: Optional[int] = None,
                       num_images_per_prompt: int = 1, controlnet_conditioning_scale=0.8, guess_mode: bool = False,
                       control_guidance_start=0.0, control_guidance_end=1.0, latents=None,
                       output_type: str = "pil", seed: Optional[int] = None, sampler=None, noise=None,
                       callback: Optional[Callable] = None, mode: Optional[str] = None, vae_dtype="float32",
                       controlnet=None, **conditioning):
    """img2img of `image` guided by control image(s) (diffusers' StableDiffusion[XL]ControlNetImg2ImgPipeline;
    its default controlnet_conditioning_scale 0.8). height / width default to the control image's size.
    `latents`, if given, is the noise added to the image latents. Other arguments as in controlnet."""
    if image is None:
        raise ValueError("controlnet_img2img needs image= (the picture to start from) and control_image=")
    nets = controlnets_of(components, controlnet)
    if control_image is not None:
        height, width = control_size(components, control_image, nets, height, width)

    def start(emb, schedule, noise_src):
        x, _, _ = image_start(components, image, emb, schedule, noise_src, height=height, width=width,
                              latents=latents, denoising_start=None, vae_dtype=vae_dtype)
        return x, []

    return _run(components, recipe="controlnet_img2img", control=control_image, start=start,
                aesthetics=uses_aesthetics(components), **_shared(locals()))


@diffusers_names
def controlnet_inpaint(components, prompt=None, image=None, mask_image=None, control_image=None,
                       negative_prompt=None, *, strength: float = 1.0, num_inference_steps: int = 50,
                       guidance_scale: Optional[float] = None, guidance_rescale: float = 0.0,
                       height: Optional[int] = None, width: Optional[int] = None, num_images_per_prompt: int = 1,
                       controlnet_conditioning_scale=1.0, guess_mode: bool = False, control_guidance_start=0.0,
                       control_guidance_end=1.0, latents=None, output_type: str = "pil",
                       seed: Optional[int] = None, sampler=None, noise=None, callback: Optional[Callable] = None,
                       mode: Optional[str] = None, vae_dtype="float32", controlnet=None, **conditioning):
    """Inpainting guided by control image(s) (diffusers' StableDiffusion[XL]ControlNetInpaintPipeline): the
    ControlNet sees the 4-channel latents, a 9-channel UNet also the mask and masked image. Other arguments as
    in inpaint and controlnet."""
    height, width = inpaint_size(components, image, mask_image, height, width)

    def start(emb, schedule, noise_src):
        return inpaint_start(components, image, mask_image, emb.prompt_embeds.shape[0], schedule, noise_src,
                             height=height, width=width, strength=strength, latents=latents, vae_dtype=vae_dtype)

    return _run(components, recipe="controlnet_inpaint", control=control_image, start=start,
                aesthetics=uses_aesthetics(components), **_shared(locals()))


_CN = {"prompt": "prompt", "negative_prompt": "negative_prompt", "guidance": "guidance_scale", "sampler": "sampler",
       "size": "size", "controlnet_scale": "controlnet_conditioning_scale"}
_CONTROL_IMAGE = (("--control-image", dict(default=None, help="ControlNet img2img / inpainting: the control image "
                                                                "(--image is the picture to edit)")),
                  ("--controlnet-scale", dict(type=float, default=None, help="ControlNet conditioning scale "
                                                                             "(default 1; img2img 0.8)")))
FAMILIES = (
    Family("controlnet", controlnet, ("StableDiffusionControlNetPipeline", "StableDiffusionXLControlNetPipeline"),
           dict(_CN, image="image"), ("image",), steps=30, cli_options=_CONTROL_IMAGE,
           help="--image is the control image (required); --controlnet-scale"),
    Family("controlnet_img2img", controlnet_img2img, ("StableDiffusionControlNetImg2ImgPipeline",
                                                      "StableDiffusionXLControlNetImg2ImgPipeline"),
           dict(_CN, image="image", control_image="control_image", strength="strength"),
           ("image", "control_image"), steps=30, help="img2img of --image guided by --control-image (both required)"),
    Family("controlnet_inpaint", controlnet_inpaint, ("StableDiffusionControlNetInpaintPipeline",
                                                      "StableDiffusionXLControlNetInpaintPipeline"),
           dict(_CN, image="image", mask="mask_image", control_image="control_image", strength="strength"),
           ("image", "mask", "control_image"), steps=30,
           help="inpaint --image under --mask guided by --control-image (all required)"),
)
