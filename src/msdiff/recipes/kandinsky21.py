"""Kandinsky 2.1 decoders (diffusers' KandinskyPipeline, KandinskyImg2ImgPipeline, KandinskyInpaintPipeline).

The UNet takes the MultilingualCLIP text (hidden states as context, the projected embedding as text_embeds) and
the prior's CLIP image embeddings (addition_embed_type "text_image", encoder_hid_dim_type "text_image_proj");
classifier-free guidance batches [negative; positive] for both, guides the eps half and drops the variance half,
as diffusers; MoVQ decodes unquantized. img2img noises the MoVQ latents with its own fixed linear schedule
(betas 1e-4 .. 0.02) to timestep int(T * strength) - 2, as diffusers does, then runs the truncated schedule.
"""
import weakref
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from ..conditioning import CFG, ExtraChannels, NetInputs, TakeChannels, compose, make_schedule
from ..samplers import noise_source, resolve_sampler, sample
from ..samplers import schedules as S
from .family import Family, diffusers_names
from .kandinsky import (cli_prepare, image_embeds_batch, movq_finish, movq_in, movq_latent_size, movq_of,
                        movq_scale_factor)
from .kandinsky_decoders import _kept_mask, kandinsky_image
from .latents import initial_noise
from .prompts import _texts

_DEFAULT_SCHEDULER = {"_class_name": "DDIMScheduler", "beta_schedule": "linear", "beta_start": 0.00085,
                      "beta_end": 0.012, "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1}


class TextImageUNet(nn.Cell):
    """unet(x, t, context, text_embeds, image_embeds) as Kandinsky 2.1 calls it."""

    def __init__(self, unet):
        super().__init__(auto_prefix=False)
        self.unet = unet

    def construct(self, x, t, encoder_hidden_states, text_embeds, image_embeds):
        return self.unet(x, t, encoder_hidden_states,
                         added_cond_kwargs={"text_embeds": text_embeds, "image_embeds": image_embeds})


_WRAPPED = weakref.WeakKeyDictionary()


def _wrapped(unet) -> TextImageUNet:
    if unet not in _WRAPPED:
        _WRAPPED[unet] = TextImageUNet(unet)
    return _WRAPPED[unet]


def encode_prompt_mclip(components, prompt, negative_prompt=None, *, num_images_per_prompt: int = 1,
                        guidance: bool = True) -> tuple:
    """(text_embeds [b, e], hidden states [b, 77, d]) of MultilingualCLIP, rows repeated num_images_per_prompt
    times; with guidance [negative ("" by default); positive] (diffusers' KandinskyPipeline._encode_prompt)."""
    tok, enc = components.tokenizer, components.text_encoder
    texts = _texts(prompt)

    def run(batch):
        t = tok(batch, padding="max_length", max_length=77, truncation=True)
        proj, last = enc(Tensor(t.input_ids, ms.int32), Tensor(t.attention_mask, ms.int32))
        return [mops.repeat_interleave(v.astype(ms.float32), num_images_per_prompt, 0) for v in (proj, last)]

    pos = run(texts)
    if not guidance:
        return tuple(pos)
    neg = run([""] * len(texts) if negative_prompt is None else _texts(negative_prompt, len(texts)))
    return tuple(mops.concat([n, p], axis=0) for n, p in zip(neg, pos))


def _denoise(components, prompt, negative_prompt, image_embeds, negative_image_embeds, x, schedule, smp, noise_src,
             *, guidance_scale, num_images_per_prompt, pieces=(), callback=None, mode=None, what="kandinsky21"):
    unet = components.unet
    guided = guidance_scale > 1.0
    text, context = encode_prompt_mclip(components, prompt, negative_prompt,
                                        num_images_per_prompt=num_images_per_prompt, guidance=guided)
    embeds, _ = image_embeds_batch(image_embeds, negative_image_embeds, num_images_per_prompt, guidance_scale, what)
    dt = unet.compute_dtype
    ch = x.shape[1]
    take = [TakeChannels(ch)] if unet.config.out_channels != ch else []
    inputs = NetInputs(encoder_hidden_states=context.astype(dt), text_embeds=text.astype(dt),
                       image_embeds=embeds.astype(dt))
    model = compose(_wrapped(unet), inputs, *pieces, *take, guidance=CFG(guidance_scale) if guided else None)
    return sample(model, x, schedule, smp, noise_src, callback, mode=mode)


def _start(components, prompt, num_images_per_prompt, height, width, seed, noise, sampler, channels=None):
    movq = movq_of(components)
    b = len(_texts(prompt)) * num_images_per_prompt
    h, w = movq_latent_size(height, width, movq_scale_factor(movq))
    noise_src = noise_source(seed, noise)
    smp = resolve_sampler(getattr(components, "scheduler", None), sampler, default=_DEFAULT_SCHEDULER)
    return (b, channels or components.unet.config.in_channels, h, w), noise_src, smp


@diffusers_names
def kandinsky21(components, prompt, image_embeds, negative_image_embeds=None, negative_prompt=None, *,
              height: int = 512, width: int = 512, num_inference_steps: int = 100, guidance_scale: float = 4.0,
              num_images_per_prompt: int = 1, seed: Optional[int] = None, noise=None,
              latents: Optional[Float[Tensor, "b c h w"]] = None, sampler=None,
              callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None, mode: Optional[str] = None,
              output_type: str = "pil"):
    """Images from a prompt and CLIP image embeddings with the Kandinsky 2.1 decoder (diffusers'
    KandinskyPipeline); the embeddings come from kandinsky_prior."""
    shape, noise_src, smp = _start(components, prompt, num_images_per_prompt, height, width, seed, noise, sampler)
    schedule = make_schedule(smp, num_inference_steps)
    x = initial_noise(shape, noise_src, latents) * np.float32(schedule.init_noise_sigma)
    x = _denoise(components, prompt, negative_prompt, image_embeds, negative_image_embeds, x, schedule, smp,
                 noise_src, guidance_scale=guidance_scale, num_images_per_prompt=num_images_per_prompt,
                 callback=callback, mode=mode)
    return movq_finish(components, x, output_type, "kandinsky21")


def img2img_noise_level(strength: float, num_train_timesteps: int = 1000) -> tuple:
    """(sqrt(abar), sqrt(1 - abar)) at int(T * strength) - 2 of the fixed linear 1e-4 .. 0.02 schedule that
    KandinskyImg2ImgPipeline.add_noise uses whatever the scheduler (float32, as torch)."""
    t = int(num_train_timesteps * strength) - 2
    acp = S.cumprod_f32(np.float32(1.0) - S.betas("linear", 1000, 0.0001, 0.02))
    return np.sqrt(acp[t]).astype(np.float32), np.sqrt(np.float32(1.0) - acp[t]).astype(np.float32)


@diffusers_names
def kandinsky21_img2img(components, prompt, image, image_embeds, negative_image_embeds=None, negative_prompt=None, *,
                      height: int = 512, width: int = 512, num_inference_steps: int = 100, strength: float = 0.3,
                      guidance_scale: float = 7.0, num_images_per_prompt: int = 1, seed: Optional[int] = None,
                      noise=None, sampler=None, callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None,
                      mode: Optional[str] = None, output_type: str = "pil"):
    """Kandinsky 2.1 from `image` noised to `strength` (diffusers' KandinskyImg2ImgPipeline)."""
    movq = movq_of(components)
    factor = movq_scale_factor(movq)
    shape, noise_src, smp = _start(components, prompt, num_images_per_prompt, height, width, seed, noise, sampler)
    pixels = kandinsky_image(image, height - height % factor, width - width % factor)
    x = movq_in(components).encode(pixels).astype(ms.float32)
    x = mops.repeat_interleave(x, num_images_per_prompt, 0)
    if tuple(x.shape) != shape:
        raise ValueError(f"kandinsky21_img2img: the image latents have shape {tuple(x.shape)}, the prompts need "
                         f"{shape} (one image per prompt, the same size as height x width)")
    schedule = make_schedule(smp, num_inference_steps, strength)
    a, b = img2img_noise_level(strength, smp.num_train_timesteps)
    x = x * np.float32(schedule.init_noise_sigma)
    x = Tensor(a) * x + Tensor(b) * noise_src.draw(shape)
    x = _denoise(components, prompt, negative_prompt, image_embeds, negative_image_embeds, x, schedule, smp,
                 noise_src, guidance_scale=guidance_scale, num_images_per_prompt=num_images_per_prompt,
                 callback=callback, mode=mode, what="kandinsky21_img2img")
    return movq_finish(components, x, output_type, "kandinsky21_img2img")


@diffusers_names
def kandinsky21_inpaint(components, prompt, image, mask_image, image_embeds, negative_image_embeds=None,
                      negative_prompt=None, *, height: int = 512, width: int = 512, num_inference_steps: int = 100,
                      guidance_scale: float = 4.0, num_images_per_prompt: int = 1, seed: Optional[int] = None,
                      noise=None, latents: Optional[Float[Tensor, "b c h w"]] = None, sampler=None,
                      callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None, mode: Optional[str] = None,
                      output_type: str = "pil"):
    """Repaint the white region of `mask_image` (diffusers' KandinskyInpaintPipeline: a 9-channel UNet sees the
    masked image latents and the kept-region mask; no per-step blend in 2.1)."""
    movq = movq_of(components)
    shape, noise_src, smp = _start(components, prompt, num_images_per_prompt, height, width, seed, noise, sampler,
                                   movq.config.latent_channels)
    image_latents = movq_in(components).encode(kandinsky_image(image, height, width)).astype(ms.float32)
    keep = Tensor(_kept_mask(mask_image, height, width, tuple(image_latents.shape[-2:])))
    extra = mops.repeat_interleave(mops.concat([image_latents * keep, keep], axis=1), num_images_per_prompt, 0)
    schedule = make_schedule(smp, num_inference_steps)
    x = initial_noise(shape, noise_src, latents) * np.float32(schedule.init_noise_sigma)
    x = _denoise(components, prompt, negative_prompt, image_embeds, negative_image_embeds, x, schedule, smp,
                 noise_src, guidance_scale=guidance_scale, num_images_per_prompt=num_images_per_prompt,
                 pieces=(ExtraChannels(extra),), callback=callback, mode=mode, what="kandinsky21_inpaint")
    return movq_finish(components, x, output_type, "kandinsky21_inpaint")


def _keep_prompt(recipe) -> Callable:
    """cli_prepare for 2.1: the decoder takes --prompt / --negative-prompt itself too."""
    prepare = cli_prepare(recipe)

    def run(args, components, kwargs: dict) -> tuple:
        text = {k: kwargs[k] for k in ("prompt", "negative_prompt") if k in kwargs}
        recipe_, kwargs = prepare(args, components, kwargs)
        return recipe_, {**kwargs, **text}

    return run


_OPTIONS = {"prompt": "prompt", "negative_prompt": "negative_prompt", "prior": "prior", "prior_steps": "prior_steps",
            "size": "size", "guidance": "guidance_scale", "sampler": "sampler"}
FAMILIES = (
    Family("kandinsky21", kandinsky21, ("KandinskyPipeline",), _OPTIONS, ("prompt",), steps=100,
           prepare=_keep_prompt(kandinsky21), help="Kandinsky 2.1: prior (--prior) then the text + image decoder"),
    Family("kandinsky21_img2img", kandinsky21_img2img, ("KandinskyImg2ImgPipeline",),
           {**_OPTIONS, "image": "image", "strength": "strength"}, ("prompt", "image"), steps=100,
           prepare=_keep_prompt(kandinsky21_img2img), help="Kandinsky 2.1 from --image at --strength"),
    Family("kandinsky21_inpaint", kandinsky21_inpaint, ("KandinskyInpaintPipeline",),
           {**_OPTIONS, "image": "image", "mask": "mask_image"}, ("prompt", "image", "mask"), steps=100,
           prepare=_keep_prompt(kandinsky21_inpaint), help="Kandinsky 2.1: --mask's white region of --image repainted"),
)
