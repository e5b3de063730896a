"""latent_upscale: StableDiffusionLatentUpscalePipeline (stabilityai/sd-x2-latent-upscaler) as a recipe.

The K-diffusion UNet (nets/unet_k.py) is a Karras et al. 2022 preconditioned denoiser: it sees c_in(sigma) * x with
the nearest-upsampled image latents as extra channels, c_noise = log(sigma) / 4 as its timestep, and the pooled text
embedding (after a [1]*64 + [0]*64 noise-level code) as timestep_cond; the denoised sample is
c_skip * x + c_out * F(x) with c_skip = 1 / (sigma^2 + 1), c_out = sigma / sqrt(sigma^2 + 1), guided, then an Euler
step of the checkpoint's scheduler (prediction_type "sample"). Everything per call is a float of the one compiled
step.
"""
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from mindspore import ops as mops

from ..conditioning import make_schedule
from ..samplers import FiniteTracker, Model, noise_source, resolve_sampler, sample
from .family import Family, diffusers_names
from .latents import finish, prepare_latents, vae_scale_factor
from .prompts import _texts, _tokens
from .text_to_image import image_latents

_F32 = np.float32


def encode_prompt_pooled(components, texts: list, max_length: Optional[int] = None) -> tuple:
    """(last encoder hidden state before the final layer norm [b, n, d], pooled [b, d]) of the CLIP text encoder
    (diffusers' latent upscaler encode_prompt: hidden_states[-1] and pooler_output)."""
    ids = _tokens(components.tokenizer, texts, max_length)
    _, pooled, states = components.text_encoder(ids)
    return states[-1].astype(ms.float32), pooled.astype(ms.float32)


def _per_call(schedule, guidance_scale: float):
    sig = np.asarray(schedule.sigmas, _F32)
    div = np.asarray(schedule.input_div, _F32)

    def scales(i: int, n: int) -> tuple:
        s = sig[i]
        return (float(np.log(s) * _F32(0.25)), float(_F32(1) / (s * s + _F32(1))),
                float(s / np.sqrt(s * s + _F32(1))), float(div[i]), float(guidance_scale))

    return scales


def k_denoiser(unet, context, pooled, image_cond, schedule, guidance_scale: float, guided: bool) -> Model:
    """The loop's Model of the latent upscaler: the preconditioned K-UNet call and classifier-free guidance on the
    denoised sample (inputs batched [uncond, cond] when guided)."""
    b = pooled.shape[0]
    code = mops.cat((mops.ones((b, 64), ms.float32), mops.zeros((b, 64), ms.float32)), axis=1)
    cond = mops.cat((code, pooled), axis=1)

    def fn(x, t, inputs, scales):
        ctx, img, tc = inputs
        xin = mops.cat((x, x), axis=0) if guided else x
        out = unet(mops.cat((xin, img.astype(xin.dtype)), axis=1), scales[0], ctx, tc)[:, :-1].astype(ms.float32)
        denoised = scales[1] * (xin * scales[3]) + scales[2] * out
        if not guided:
            return denoised
        uncond, text = denoised[:x.shape[0]], denoised[x.shape[0]:]
        return uncond + scales[4] * (text - uncond)

    return Model(fn, (context, image_cond, cond), _per_call(schedule, guidance_scale), None,
                 ("latent_upscale", guided), unet)


@diffusers_names
def latent_upscale(components, prompt=None, image=None, *, num_inference_steps: int = 75, guidance_scale: float = 9.0,
                   negative_prompt=None, latents=None, output_type: str = "pil", seed: Optional[int] = None,
                   sampler=None, noise=None, callback: Optional[Callable] = None, mode: Optional[str] = None,
                   vae_dtype="float32"):
    """`image` (PIL / numpy image(s), or SD latents (b, 4, h, w)) upscaled 2x in latent space, guided by `prompt`
    (diffusers' StableDiffusionLatentUpscalePipeline); returns PIL images, an array (b, 2h, 2w, 3) in [0, 1] ("np")
    or the latents ("latent")."""
    if image is None:
        raise ValueError("latent_upscale: image is required (the picture or SD latents to upscale)")
    if prompt is None:
        raise ValueError("latent_upscale: pass prompt")
    g = float(guidance_scale)
    if not np.isfinite(g):
        raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale!r}")
    texts = _texts(prompt)
    guided = g > 1.0
    if g == 0:
        texts = [""] * len(texts)
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    context, pooled = encode_prompt_pooled(components, texts)
    if guided:
        neg = _texts("" if negative_prompt is None else negative_prompt, len(texts))
        neg_context, neg_pooled = encode_prompt_pooled(components, neg, context.shape[1])
        context, pooled = mops.cat((neg_context, context), axis=0), mops.cat((neg_pooled, pooled), axis=0)
    tracker.add("prompt encoding (text encoder)", context)
    z, _, _ = image_latents(components, image, None, None, noise_src, vae_dtype)
    if z.shape[0] != len(texts):
        raise ValueError(f"latent_upscale: prompt has batch size {len(texts)} and image has batch size {z.shape[0]}")
    if z.shape[1] + components.vae.config.latent_channels != components.unet.config.in_channels:
        raise ValueError(f"latent_upscale: the UNet takes {components.unet.config.in_channels} channels, not "
                         f"{z.shape[1]} image + {components.vae.config.latent_channels} latent channels")
    image_cond = mops.cat((z, z), axis=0) if guided else z
    h, w = image_cond.shape[2], image_cond.shape[3]
    image_cond = image_cond.reshape(-1, z.shape[1], h, 1, w, 1).broadcast_to((image_cond.shape[0], z.shape[1], h, 2,
                                                                               w, 2))
    image_cond = image_cond.reshape(-1, z.shape[1], 2 * h, 2 * w)  # nearest 2x (noise level 0: times 1)
    smp = resolve_sampler(components.scheduler, sampler)
    schedule = make_schedule(smp, num_inference_steps)
    f = vae_scale_factor(components)
    x = prepare_latents(components, len(texts), 2 * h * f, 2 * w * f, noise_src, latents, schedule.init_noise_sigma)
    tracker.add("initial latents", x)
    model = k_denoiser(components.unet, context, pooled, image_cond, schedule, g, guided)
    x = sample(model, x.astype(ms.float32), schedule, smp, noise_src, callback, mode=mode, tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)


FAMILIES = (
    Family("latent_upscale", latent_upscale, ("StableDiffusionLatentUpscalePipeline",),
           {"prompt": "prompt", "negative_prompt": "negative_prompt", "image": "image", "guidance": "guidance_scale",
            "sampler": "sampler"}, ("image",), steps=30, help="2x latent upscaling of --image, guided by --prompt"),
)
