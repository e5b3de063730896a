"""DeepFloyd IF stage I (diffusers' IFPipeline, IFImg2ImgPipeline, IFInpaintingPipeline) as recipes, and the parts
stage II (recipes/if_superres.py) shares.

IF denoises pixels: a T5 prompt (77 tokens, lower-cased and stripped: the pipeline's clean_caption=False path)
conditions a UNet that predicts eps and a learned variance; classifier-free guidance mixes the eps halves and keeps
the conditional variance (`conditioning.CFGVariance`) for IF's DDPM (learned_range variance, dynamic
thresholding). Images in [-1, 1] go out as "pt" Tensors (what stage II takes), "np" arrays or PIL images.
Inpainting keeps the unmasked pixels at their previous value after every step (`keep_unmasked`, a sampler whose
step does it). IF's watermarker and safety checker are not implemented (not in scope): their components are
ignored. All noise comes from `noise` (a NoiseSource, recorded arrays or a callable(shape)) or numpy seeded by
`seed`, in diffusers' draw order.
"""
import dataclasses
import os
from typing import Callable, Optional

import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..conditioning import CFG, CFGVariance, NetInputs, TakeChannels, compose, make_schedule
from ..samplers import FiniteTracker, Sampler, add_noise, noise_source, resolve_sampler, sample
from .family import Family, diffusers_names
from .images import postprocess
from .latents import initial_noise
from .pixart import encode_prompt_t5

MAX_LENGTH = 77
_LEARNED = ("learned", "learned_range")


def encode_prompt_if(components, prompt=None, negative_prompt=None, *, guidance: bool = True,
                     num_images_per_prompt: int = 1, prompt_embeds=None, negative_prompt_embeds=None) -> tuple:
    """(prompt embeds, negative embeds or None) from IF's T5 (IFPipeline.encode_prompt, clean_caption=False): 77
    tokens with the padding mask, the negative "" unless given; each row repeated num_images_per_prompt times."""
    ones = None if prompt_embeds is None else np.ones(tuple(prompt_embeds.shape[:2]), np.int64)
    neg_ones = None if negative_prompt_embeds is None else np.ones(tuple(negative_prompt_embeds.shape[:2]), np.int64)
    emb, _, neg, _ = encode_prompt_t5(
        components, prompt, "" if negative_prompt is None else negative_prompt, guidance=guidance,
        num_images_per_prompt=num_images_per_prompt, max_sequence_length=MAX_LENGTH, prompt_embeds=prompt_embeds,
        prompt_attention_mask=ones, negative_prompt_embeds=negative_prompt_embeds,
        negative_prompt_attention_mask=neg_ones)
    return emb, neg


def learned_variance(scheduler: Optional[dict], smp: Sampler, sampler=None) -> bool:
    """Whether the sampler step reads the net's variance half: a DDPM / unCLIP sampler whose config (`sampler` if it
    is a config dict, else the pipeline's `scheduler`) has learned variance."""
    config = sampler if isinstance(sampler, dict) else scheduler
    return smp.name in ("ddpm", "unclip") and (config or {}).get("variance_type") in _LEARNED


def if_model(components, smp: Sampler, sampler, context: Tensor, guidance_scale: float, *pieces, **net_inputs):
    """The IF UNet as the loop's Model: T5 context ([negative; prompt] when guided) and other net inputs; guidance
    on the eps half with the conditional variance for a learned-variance sampler, otherwise the variance dropped."""
    unet = components.unet
    ch = unet.config.out_channels // 2
    learned = learned_variance(components.scheduler, smp, sampler)
    guided = guidance_scale > 1.0
    take = [] if learned else [TakeChannels(ch)]
    guidance = None
    if guided:
        guidance = CFGVariance(guidance_scale, ch) if learned else CFG(guidance_scale)
    inputs = NetInputs(encoder_hidden_states=context, **net_inputs)
    return compose(unet, inputs, *pieces, *take, guidance=guidance)


_MASKED_STEPS = {}


def _masked_step(step: Callable) -> Callable:
    """step, then x = (1 - mask) * x + mask * x_next with the mask as the first state entry (one per base step, so
    one compiled graph serves every mask)."""
    if step not in _MASKED_STEPS:
        def masked(x, out, state, c, noise):
            x_next, inner = step(x, out, state[1:], c, noise)
            mask = state[0]
            return (1 - mask) * x + mask * x_next, (mask,) + tuple(inner)

        _MASKED_STEPS[step] = masked
    return _MASKED_STEPS[step]


def keep_unmasked(smp: Sampler, mask: Float[Tensor, "b 1 h w"]) -> Sampler:
    """smp repainting only where mask is 1: elsewhere each step keeps the previous sample (IF inpainting)."""
    init = smp.init_state
    return dataclasses.replace(smp, step=_masked_step(smp.step), init_state=lambda x: (mask,) + tuple(init(x)))


def resize_if(image, size: int):
    """IF's resize: the short side to `size`, the long side to the multiple of 8 nearest the aspect ratio (bicubic,
    no reducing gap)."""
    import PIL.Image

    w, h = image.size
    coef = w / h
    w, h = size, size
    if coef >= 1:
        w = int(round(size / 8 * coef) * 8)
    else:
        h = int(round(size / 8 / coef) * 8)
    return image.resize((w, h), resample=PIL.Image.BICUBIC, reducing_gap=None)


def _items(image) -> list:
    """The images of a single image or list; paths opened with PIL."""
    import PIL.Image

    items = list(image) if isinstance(image, (list, tuple)) else [image]
    return [PIL.Image.open(x) if isinstance(x, (str, os.PathLike)) else x for x in items]


def _is_pil(x) -> bool:
    import PIL.Image

    return isinstance(x, PIL.Image.Image)


def if_image(image, size: Optional[int], what: str = "image") -> Float[Tensor, "b 3 h w"]:
    """A PIL image (list) -> [-1, 1] at IF's resize to `size` (None: as it is); numpy (h w c, or b h w c) and Tensors
    (c h w, or b c h w) are taken as they are, as diffusers does."""
    items = _items(image)
    if not items or image is None:
        raise ValueError(f"{what} is required")
    if all(_is_pil(im) for im in items):
        arrays = []
        for im in items:
            im = im.convert("RGB")
            im = resize_if(im, size) if size is not None else im
            arrays.append(np.asarray(im).astype(np.float32) / np.float32(127.5) - np.float32(1.0))
        return Tensor(np.stack(arrays).transpose(0, 3, 1, 2).copy())
    if all(isinstance(im, np.ndarray) for im in items):
        a = np.concatenate(items) if items[0].ndim == 4 else np.stack(items)
        return Tensor(np.ascontiguousarray(a.transpose(0, 3, 1, 2)).astype(np.float32))
    if all(isinstance(im, Tensor) for im in items):
        t = mops.concat(items, axis=0) if items[0].ndim == 4 else mops.stack(items, axis=0)
        return t.astype("float32")
    raise TypeError(f"{what}: expected PIL images, numpy arrays or Tensors, got {type(items[0]).__name__}")


def if_mask(mask_image, size: int) -> Float[Tensor, "b 1 h w"]:
    """IF's mask: PIL -> L at IF's resize, /255; numpy (h w) stacked; Tensors as diffusers; then 0 / 1 at 0.5."""
    items = _items(mask_image)
    if mask_image is None:
        raise ValueError("mask_image is required")
    if all(_is_pil(m) for m in items):
        m = np.stack([np.asarray(resize_if(x.convert("L"), size))[None] for x in items]).astype(np.float32) / 255.0
    elif all(isinstance(m, np.ndarray) for m in items):
        m = np.concatenate([x[None, None] for x in items]).astype(np.float32)
    elif all(isinstance(m, Tensor) for m in items):
        m = np.concatenate([x.asnumpy()[None] if x.ndim < 4 else x.asnumpy() for x in items]).astype(np.float32)
        m = m.reshape(m.shape[0], 1, m.shape[-2], m.shape[-1]) if m.ndim != 4 else m
    else:
        raise TypeError(f"mask_image: expected PIL images, numpy arrays or Tensors, got {type(items[0]).__name__}")
    return Tensor(np.where(m >= 0.5, 1.0, 0.0).astype(np.float32))


def rows(x: Tensor, n: int) -> Tensor:
    """Each row repeated n times (torch's repeat_interleave on the batch)."""
    return mops.repeat_interleave(x, n, 0) if n > 1 else x


def batch_mask(mask: Tensor, batch: int, num_images_per_prompt: int) -> Tensor:
    """A one-row mask for the whole batch, otherwise each row num_images_per_prompt times (diffusers)."""
    return rows(mask, batch * num_images_per_prompt if mask.shape[0] == 1 else num_images_per_prompt)


def finish(x: Tensor, output_type: str):
    """The sample as a "pt" Tensor (as it is, [-1, 1]: stage II's input), "np" array or PIL images."""
    if output_type == "pt":
        return x
    return postprocess(x, output_type)


def prepare(components, prompt, negative_prompt, guidance_scale, num_images_per_prompt, prompt_embeds,
            negative_prompt_embeds, sampler, seed, noise, clean_caption):
    """(context, sampler, noise source, tracker) shared by every IF recipe."""
    if clean_caption:
        raise ValueError("clean_caption=True (bs4 / ftfy caption cleaning) is not implemented by msdiff; pass "
                         "clean_caption=False (the prompt is lower-cased and stripped)")
    if getattr(components, "unet", None) is None:
        raise ValueError("the components have no unet (an IF UNet2DConditionModel)")
    guided = guidance_scale > 1.0
    emb, neg = encode_prompt_if(components, prompt, negative_prompt, guidance=guided,
                                num_images_per_prompt=num_images_per_prompt, prompt_embeds=prompt_embeds,
                                negative_prompt_embeds=negative_prompt_embeds)
    context = mops.concat([neg, emb], axis=0) if guided else emb
    smp = resolve_sampler(components.scheduler, sampler)
    return context, emb.shape[0], smp, noise_source(seed, noise), FiniteTracker()


@diffusers_names
def deepfloyd_if_text_to_image(components, prompt=None, *, num_inference_steps: int = 100, guidance_scale: float = 7.0,
                 negative_prompt=None, num_images_per_prompt: int = 1, height: Optional[int] = None,
                 width: Optional[int] = None, prompt_embeds=None, negative_prompt_embeds=None, latents=None,
                 output_type: str = "pil", clean_caption: bool = False, seed: Optional[int] = None, noise=None,
                 sampler=None, callback: Optional[Callable] = None, mode: Optional[str] = None):
    """IF stage I text-to-image (diffusers' IFPipeline): images of the UNet's sample_size (64 for IF-I) from T5
    prompt embeddings; output_type "pt" gives the [-1, 1] Tensor stage II takes."""
    context, b, smp, noise_src, tracker = prepare(components, prompt, negative_prompt, guidance_scale,
                                                  num_images_per_prompt, prompt_embeds, negative_prompt_embeds,
                                                  sampler, seed, noise, clean_caption)
    unet = components.unet
    height = height or unet.config.sample_size
    width = width or unet.config.sample_size
    schedule = make_schedule(smp, num_inference_steps)
    x = initial_noise((b, unet.config.in_channels, height, width), noise_src, latents)
    if schedule.init_noise_sigma != 1.0:
        x = x * np.float32(schedule.init_noise_sigma)
    model = if_model(components, smp, sampler, context, guidance_scale)
    x = sample(model, x, schedule, smp, noise_src, callback, mode=mode, tracker=tracker)
    return finish(x, output_type)


def _start(components, image, strength, num_inference_steps, smp, noise_src, b, num_images_per_prompt):
    """(schedule, clean image rows, noised image rows) of an img2img / inpainting start (IF's get_timesteps and
    prepare_intermediate_images)."""
    schedule = make_schedule(smp, num_inference_steps, strength)
    clean = if_image(image, components.unet.config.sample_size)
    eps = noise_src.draw((b,) + tuple(clean.shape[1:]))
    clean = rows(clean, num_images_per_prompt)
    if clean.shape[0] != b:
        raise ValueError(f"image has {clean.shape[0] // num_images_per_prompt} rows for a batch of "
                         f"{b // num_images_per_prompt} prompts")
    return schedule, clean, add_noise(schedule, clean, eps, 0)


@diffusers_names
def deepfloyd_if_img2img(components, prompt=None, image=None, *, strength: float = 0.7,
                         num_inference_steps: int = 80, guidance_scale: float = 10.0, negative_prompt=None,
                         num_images_per_prompt: int = 1, prompt_embeds=None, negative_prompt_embeds=None,
                         output_type: str = "pil", clean_caption: bool = False, seed: Optional[int] = None,
                         noise=None, sampler=None, callback: Optional[Callable] = None, mode: Optional[str] = None):
    """IF stage I image-to-image (diffusers' IFImg2ImgPipeline): `image` resized to the UNet's sample_size (short
    side) and noised to the first kept timestep at `strength`."""
    context, b, smp, noise_src, tracker = prepare(components, prompt, negative_prompt, guidance_scale,
                                                  num_images_per_prompt, prompt_embeds, negative_prompt_embeds,
                                                  sampler, seed, noise, clean_caption)
    schedule, _, x = _start(components, image, strength, num_inference_steps, smp, noise_src, b,
                            num_images_per_prompt)
    model = if_model(components, smp, sampler, context, guidance_scale)
    x = sample(model, x, schedule, smp, noise_src, callback, mode=mode, tracker=tracker)
    return finish(x, output_type)


@diffusers_names
def deepfloyd_if_inpaint(components, prompt=None, image=None, mask_image=None, *, strength: float = 1.0,
                         num_inference_steps: int = 50, guidance_scale: float = 7.0, negative_prompt=None,
                         num_images_per_prompt: int = 1, prompt_embeds=None, negative_prompt_embeds=None,
                         output_type: str = "pil", clean_caption: bool = False, seed: Optional[int] = None,
                         noise=None, sampler=None, callback: Optional[Callable] = None, mode: Optional[str] = None):
    """IF stage I inpainting (diffusers' IFInpaintingPipeline): mask_image 1 (white) = repaint; the rest of `image`
    stays as it is at every step."""
    context, b, smp, noise_src, tracker = prepare(components, prompt, negative_prompt, guidance_scale,
                                                  num_images_per_prompt, prompt_embeds, negative_prompt_embeds,
                                                  sampler, seed, noise, clean_caption)
    mask = batch_mask(if_mask(mask_image, components.unet.config.sample_size), b // num_images_per_prompt,
                      num_images_per_prompt)
    schedule, clean, noised = _start(components, image, strength, num_inference_steps, smp, noise_src, b,
                                     num_images_per_prompt)
    x = (1 - mask) * clean + mask * noised
    model = if_model(components, smp, sampler, context, guidance_scale)
    x = sample(model, x, schedule, keep_unmasked(smp, mask), noise_src, callback, mode=mode, tracker=tracker)
    return finish(x, output_type)


_OPTIONS = {"prompt": "prompt", "negative_prompt": "negative_prompt", "guidance": "guidance_scale",
            "sampler": "sampler"}

FAMILIES = (
    Family("deepfloyd_if", deepfloyd_if_text_to_image, ("IFPipeline",), dict(_OPTIONS, size="size"), ("prompt",),
           steps=100, help="DeepFloyd IF stage I: pixels (the UNet's sample_size) from a T5 prompt"),
    Family("deepfloyd_if_img2img", deepfloyd_if_img2img, ("IFImg2ImgPipeline",),
           dict(_OPTIONS, image="image", strength="strength"), ("prompt", "image"), steps=80,
           help="DeepFloyd IF stage I from --image at --strength (default 0.7)"),
    Family("deepfloyd_if_inpaint", deepfloyd_if_inpaint, ("IFInpaintingPipeline",),
           dict(_OPTIONS, image="image", mask="mask_image", strength="strength"), ("prompt", "image", "mask"),
           steps=50, help="DeepFloyd IF stage I: --mask's white region of --image repainted"),
)
