"""controlnet: text-to-image guided by a control image through a ControlNet, for SD 1.x/2.x and SD-XL.

The composition of text_to_image plus two public steps: `control_image` (diffusers' ControlNet image
processor and batching) and a `Control` added to the denoiser, so the ControlNet runs inside the same
(graph-mode compiled) guided step as the UNet. Argument names are diffusers'
StableDiffusionControlNetPipeline / StableDiffusionXLControlNetPipeline ones.
"""
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from .conditioning import default_guidance, default_hw, make_denoiser, text_conditioning, uses_cfg
from .denoise import Control, denoise, make_schedule, resolve_sampler
from .steps import FiniteTracker, NoiseSource, default_size, finish, prepare_latents, preprocess_image, \
    vae_scale_factor


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


def _check_guidance_window(start, end) -> None:
    if isinstance(start, (list, tuple)) or isinstance(end, (list, tuple)):
        raise ValueError("control_guidance_start / control_guidance_end lists are for Multi-ControlNet, which msdiff "
                         "does not support: pass one float each")
    if not 0.0 <= start < end <= 1.0:
        raise ValueError(f"need 0 <= control_guidance_start < control_guidance_end <= 1, got {start} and {end}")


def controlnet(components, prompt=None, image=None, negative_prompt=None, *,
               num_inference_steps: int = 50, guidance_scale: Optional[float] = None,
               height: Optional[int] = None, width: Optional[int] = None, num_images_per_prompt: int = 1,
               controlnet_conditioning_scale: float = 1.0, guess_mode: bool = False,
               control_guidance_start: float = 0.0, control_guidance_end: float = 1.0, latents=None,
               clip_skip: Optional[int] = None, prompt_embeds: Optional[Tensor] = None,
               negative_prompt_embeds: Optional[Tensor] = None, pooled_prompt_embeds: Optional[Tensor] = None,
               negative_pooled_prompt_embeds: Optional[Tensor] = None, prompt_2=None, negative_prompt_2=None,
               original_size=None, crops_coords_top_left=(0, 0), target_size=None, negative_original_size=None,
               negative_crops_coords_top_left=None, negative_target_size=None, output_type: str = "pil",
               seed: Optional[int] = None, sampler=None, noise=None, callback: Optional[Callable] = None,
               mode: str = "pynative", vae_dtype="float32", controlnet=None):
    """Images from text and a control image (diffusers' StableDiffusion[XL]ControlNetPipeline).

    image: the control image (PIL / path / numpy H x W x 3, or a (b, c, h, w) Tensor in [0, 1]); height and
    width default to its size rounded down to the VAE scale factor. The ControlNet is
    components.extra["controlnet"] unless `controlnet` is given. controlnet_conditioning_scale multiplies its
    residuals, which are used only for the calls in [control_guidance_start, control_guidance_end) of the run;
    guess_mode (or a global_pool_conditions ControlNet) feeds it only the conditional half and scales its
    residuals from 0.1 to 1. Other arguments as in text_to_image.
    """
    net = components.extra.get("controlnet") if controlnet is None else controlnet
    if net is None:
        raise ValueError("controlnet: the pipeline has no 'controlnet' component; pass controlnet=")
    if isinstance(net, (list, tuple)) or isinstance(controlnet_conditioning_scale, (list, tuple)):
        raise ValueError("Multi-ControlNet (a list of ControlNets / scales) is not supported by msdiff: "
                         "pass one ControlNet and one controlnet_conditioning_scale")
    if image is None:
        raise ValueError("controlnet needs image= (the control image)")
    _check_guidance_window(control_guidance_start, control_guidance_end)
    g = default_guidance(components) if guidance_scale is None else guidance_scale
    guess_mode = guess_mode or net.config.global_pool_conditions
    noise_src, tracker = NoiseSource(seed, noise), FiniteTracker()
    emb = text_conditioning(components, prompt, negative_prompt, guidance=uses_cfg(components, g),
                            num_images_per_prompt=num_images_per_prompt, clip_skip=clip_skip,
                            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds,
                            pooled_prompt_embeds=pooled_prompt_embeds,
                            negative_pooled_prompt_embeds=negative_pooled_prompt_embeds, prompt_2=prompt_2,
                            negative_prompt_2=negative_prompt_2, tracker=tracker)
    batch = emb.prompt_embeds.shape[0]
    pre = _preprocessed(image)
    if pre is None:
        height, width = default_size(image, height, width, vae_scale_factor(components))
    else:
        height, width = height or pre.shape[2], width or pre.shape[3]
    height, width = default_hw(components, height, width)
    cond = control_image(image, height, width, batch, num_images_per_prompt, net.config.conditioning_channels)
    guided = emb.negative_prompt_embeds is not None
    if guided and not guess_mode:
        cond = mops.concat([cond, cond], axis=0)

    smp = resolve_sampler(components, sampler)
    schedule = make_schedule(smp, num_inference_steps)
    x = prepare_latents(components, batch, height, width, noise_src, latents, schedule.init_noise_sigma)
    tracker.add("initial latents", x)
    den = make_denoiser(components, emb, guidance_scale=g, height=height, width=width, original_size=original_size,
                        crops_coords_top_left=crops_coords_top_left, target_size=target_size,
                        negative_original_size=negative_original_size,
                        negative_crops_coords_top_left=negative_crops_coords_top_left,
                        negative_target_size=negative_target_size)
    control = Control(net, cond.astype(ms.float32), float(controlnet_conditioning_scale),
                      float(control_guidance_start), float(control_guidance_end), bool(guess_mode))
    x = denoise(den._replace(control=control), smp, schedule, x, noise_src, mode, callback, tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)

