"""Kandinsky 2.2 image decoding from CLIP image embeddings (diffusers' KandinskyV22Pipeline).

The UNet takes the image embeddings only (addition_embed_type / encoder_hid_dim_type "image": no text context);
classifier-free guidance batches [negative; positive] embeddings, guides the eps half of the output and drops the
variance half before a non-learned sampler step, as diffusers; MoVQ decodes the latents unquantized. The
embeddings come from a prior (msdiff.nets.prior_transformer) or any CLIP image encoder.
"""
import weakref
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from ..conditioning import CFG, NetInputs, TakeChannels, compose
from ..samplers import NonFiniteError, noise_source, resolve_sampler, sample
from .family import Family
from .images import postprocess
from .latents import initial_noise

_DEFAULT_SCHEDULER = {"_class_name": "DDPMScheduler"}


class ImageEmbedsUNet(nn.Cell):
    """unet(x, t, image_embeds) as Kandinsky 2.2 calls it: no context, the embeddings in added_cond_kwargs."""

    def __init__(self, unet):
        super().__init__(auto_prefix=False)
        self.unet = unet

    def construct(self, x, t, image_embeds):
        return self.unet(x, t, None, added_cond_kwargs={"image_embeds": image_embeds})


_WRAPPED = weakref.WeakKeyDictionary()


def _wrapped(unet) -> ImageEmbedsUNet:
    if unet not in _WRAPPED:
        _WRAPPED[unet] = ImageEmbedsUNet(unet)
    return _WRAPPED[unet]


def movq_of(components):
    """The pipeline's MoVQ (`extra["movq"]` of msdiff.load_pipeline, or a `movq` attribute)."""
    movq = getattr(components, "movq", None) or getattr(components, "extra", {}).get("movq")
    if movq is None:
        raise ValueError("the components have no 'movq' (a VQModel)")
    return movq


def movq_latent_size(height: int, width: int, scale_factor: int) -> tuple:
    """Latent (h, w) for an image size: rounded up to a multiple of scale_factor**2, then / scale_factor
    (diffusers' downscale_height_and_width)."""
    return tuple(-(-v // scale_factor ** 2) * scale_factor for v in (height, width))


def _embeds(value, name: str) -> Tensor:
    if value is None:
        raise ValueError(f"kandinsky_v22: {name} is required")
    value = value if isinstance(value, Tensor) else Tensor(np.asarray(value, np.float32))
    if value.ndim != 2:
        raise ValueError(f"kandinsky_v22: {name} must be [batch, dim], got shape {value.shape}")
    return value.astype(ms.float32)


def kandinsky_v22(components, image_embeds, negative_image_embeds=None, *, height: int = 512, width: int = 512,
                  num_inference_steps: int = 100, guidance_scale: float = 4.0, num_images_per_prompt: int = 1,
                  seed: Optional[int] = None, noise=None, latents: Optional[Float[Tensor, "b c h w"]] = None,
                  sampler=None, callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None,
                  mode: Optional[str] = None, output_type: str = "pil"):
    """Images from CLIP image embeddings with a Kandinsky 2.2 decoder (diffusers' KandinskyV22Pipeline).

    negative_image_embeds is needed with guidance_scale > 1 (the prior's zero-image embedding, usually).
    sampler: None (the pipeline's scheduler), a scheduler class name / config dict, or a Sampler.
    """
    unet, movq = components.unet, movq_of(components)
    positive = _embeds(image_embeds, "image_embeds")
    b = positive.shape[0] * num_images_per_prompt
    embeds = mops.repeat_interleave(positive, num_images_per_prompt, 0)
    guided = guidance_scale > 1.0
    if guided:
        negative = _embeds(negative_image_embeds, "negative_image_embeds (guidance_scale > 1)")
        if negative.shape != positive.shape:
            raise ValueError(f"kandinsky_v22: negative_image_embeds {negative.shape} must match image_embeds "
                             f"{positive.shape}")
        embeds = mops.concat([mops.repeat_interleave(negative, num_images_per_prompt, 0), embeds], axis=0)
    ch = unet.config.in_channels
    h, w = movq_latent_size(height, width, 2 ** (len(movq.config.block_out_channels) - 1))
    noise_src = noise_source(seed, noise)
    smp = resolve_sampler(getattr(components, "scheduler", None), sampler, default=_DEFAULT_SCHEDULER)
    schedule = smp.schedule(num_inference_steps)
    x = initial_noise((b, ch, h, w), noise_src, latents) * np.float32(schedule.init_noise_sigma)
    pieces = [TakeChannels(ch)] if unet.config.out_channels != ch else []
    model = compose(_wrapped(unet), NetInputs(image_embeds=embeds.astype(unet.compute_dtype)), *pieces,
                    guidance=CFG(guidance_scale) if guided else None)
    x = sample(model, x, schedule, smp, noise_src, callback, mode=mode)
    if output_type == "latent":
        return x
    image = movq.decode(x.astype(movq.compute_dtype), force_not_quantize=True).astype(ms.float32)
    if not bool(mops.isfinite(image).all()):
        raise NonFiniteError("kandinsky_v22: the MoVQ decode produced inf/nan; load the movq in float32")
    return postprocess(image, output_type)


def _cli(args, components, kwargs: dict) -> tuple:
    raise ValueError("KandinskyV22Pipeline needs image embeddings from a prior; call "
                     "msdiff.recipes.kandinsky_v22(components, image_embeds, negative_image_embeds) from Python")


FAMILIES = (Family("kandinsky_v22", kandinsky_v22, ("KandinskyV22Pipeline",), {}, (), steps=100, prepare=_cli,
                   help="Python only for now: needs image embeddings (no prior pipeline in the CLI yet)"),)
