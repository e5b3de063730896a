"""Kandinsky priors: text -> CLIP image embedding (diffusers' KandinskyPriorPipeline, KandinskyV22PriorPipeline,
KandinskyV22PriorEmb2EmbPipeline and KandinskyV22PriorPipeline.interpolate).

The prior (msdiff.nets.prior_transformer) is called on the loop as prior(x, t, proj_embedding=CLIP text embeds,
encoder_hidden_states=CLIP last hidden state, attention_mask=text mask); classifier-free guidance batches
[negative; positive] text, UnCLIPScheduler steps on the predicted sample, and the result is un-normalised with the
prior's clip_mean / clip_std. The negative image embedding is the CLIP image encoder's embedding of an all-zero
image, or with a negative prompt the prior's embedding of it (diffusers runs both prompts in one batch).
"""
from typing import Callable, NamedTuple, Optional, Sequence

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..conditioning import CFG, NetInputs, compose, make_schedule
from ..samplers import add_noise, noise_source, resolve_sampler, sample
from .clip_image import clip_image_config, preprocess
from .family import Family, diffusers_names
from .latents import initial_noise
from .prompts import _texts

_DEFAULT_SCHEDULER = {"_class_name": "UnCLIPScheduler", "variance_type": "fixed_small_log",
                      "prediction_type": "sample", "clip_sample_range": 10.0}


class PriorOutput(NamedTuple):
    """image_embeds [b, d] and negative_image_embeds [b, d] (diffusers' KandinskyPriorPipelineOutput)."""

    image_embeds: object
    negative_image_embeds: object


def _part(components, name: str):
    value = getattr(components, name, None)
    if value is None:
        value = getattr(components, "extra", {}).get(name)
    if value is None:
        raise ValueError(f"kandinsky prior: the components have no {name!r}")
    return value


def encode_prior_prompt(components, prompt: list, negative_prompt: Optional[list], num_images_per_prompt: int,
                        guidance: bool) -> tuple:
    """(text_embeds [b, e], last_hidden_state [b, n, e], attention_mask [b, n]) of the prompts, each row repeated
    num_images_per_prompt times; with guidance [negative ("" by default); positive] (diffusers' _encode_prompt:
    the text encoder runs without the mask, the prior gets it)."""
    tok, enc = components.tokenizer, components.text_encoder

    def run(texts):
        t = tok(texts, padding="max_length", max_length=tok.model_max_length, truncation=True)
        last, embeds, _ = enc(Tensor(t.input_ids))
        rep = [mops.repeat_interleave(v, num_images_per_prompt, 0) if num_images_per_prompt > 1 else v
               for v in (embeds.astype(ms.float32), last.astype(ms.float32), Tensor(t.attention_mask, ms.int32))]
        return rep

    pos = run(prompt)
    if not guidance:
        return tuple(pos)
    neg = run([""] * len(prompt) if negative_prompt is None else _texts(negative_prompt, len(prompt)))
    return tuple(mops.concat([n, p], axis=0) for n, p in zip(neg, pos))


def zero_image_embeds(components, batch: int) -> Float[Tensor, "b d"]:
    """The CLIP image embedding of an all-zero image_size x image_size input, repeated batch times (diffusers'
    get_zero_embed)."""
    encoder = _part(components, "image_encoder")
    s = encoder.config.image_size
    emb = encoder(Tensor(np.zeros((1, 3, s, s), np.float32)).astype(_dtype(encoder)))[1].astype(ms.float32)
    return mops.tile(emb, (batch, 1))


def _dtype(net):
    for _, p in net.parameters_and_names():
        return p.dtype
    return ms.float32


def encode_reference_image(components, image, num_images_per_prompt: int = 1) -> Float[Tensor, "b d"]:
    """CLIP image embeddings [b * n, d] of reference images (PIL / numpy through the pipeline's image_processor
    config, a 4-d Tensor / array as pixel values) or, for a 2-d array, the embeddings themselves (repeated)."""
    if isinstance(image, (Tensor, np.ndarray)) and image.ndim == 2:
        emb = image if isinstance(image, Tensor) else Tensor(np.asarray(image, np.float32))
        emb = emb.astype(ms.float32)
    else:
        encoder = _part(components, "image_encoder")
        if isinstance(image, (Tensor, np.ndarray)) and image.ndim != 4 and not (
                isinstance(image, np.ndarray) and image.ndim == 3):
            raise ValueError(f"kandinsky prior: a Tensor image must be [batch, 3, h, w] pixel values or [batch, dim] "
                             f"embeddings, got shape {tuple(image.shape)}")
        if isinstance(image, (Tensor, np.ndarray)) and image.ndim == 4:
            pixels = image if isinstance(image, Tensor) else Tensor(np.asarray(image, np.float32))
        else:
            pixels = preprocess(image, clip_image_config(_part(components, "image_processor")))
        emb = encoder(pixels.astype(_dtype(encoder)))[1].astype(ms.float32)
    return mops.repeat_interleave(emb, num_images_per_prompt, 0) if num_images_per_prompt > 1 else emb


def _prompts(prompt, negative_prompt) -> tuple:
    """diffusers' batching: with a negative prompt it is appended to the prompts (its embedding comes back as the
    negative image embedding) and becomes the negative text of both halves."""
    prompt = _texts(prompt)
    if negative_prompt is None:
        return prompt, None
    negative = _texts(negative_prompt)
    return prompt + negative, 2 * negative


def _run_prior(components, prompt, negative, x, schedule, smp, noise_src, guidance_scale, num_images_per_prompt,
               callback, mode) -> Float[Tensor, "b d"]:
    prior = _part(components, "prior")
    guided = guidance_scale > 1.0
    embeds, hidden, mask = encode_prior_prompt(components, prompt, negative, num_images_per_prompt, guided)
    dt = prior.compute_dtype
    model = compose(prior, NetInputs(proj_embedding=embeds.astype(dt), encoder_hidden_states=hidden.astype(dt),
                                     attention_mask=mask), guidance=CFG(guidance_scale) if guided else None)
    x = sample(model, x, schedule, smp, noise_src, callback, mode=mode)
    return prior.post_process_latents(x.astype(dt)).astype(ms.float32)


def _finish(components, embeds: Tensor, negative, output_type: str) -> PriorOutput:
    if negative is None:
        zero = zero_image_embeds(components, embeds.shape[0])
    else:
        embeds, zero = mops.split(embeds, embeds.shape[0] // 2, axis=0)
    return _output(embeds, zero, output_type)


def _output(embeds: Tensor, zero: Tensor, output_type: str) -> PriorOutput:
    if output_type == "np":
        return PriorOutput(embeds.asnumpy(), zero.asnumpy())
    if output_type not in ("pt", "tensor"):
        raise ValueError(f"kandinsky prior: output_type must be 'pt' (Tensors) or 'np', got {output_type!r}")
    return PriorOutput(embeds, zero)


def _check_steps(num_inference_steps) -> None:
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 2:
        raise ValueError(f"kandinsky prior: num_inference_steps must be an int >= 2 (UnCLIPScheduler), got "
                         f"{num_inference_steps!r}")


@diffusers_names
def kandinsky_prior(components, prompt, negative_prompt=None, *, num_images_per_prompt: int = 1,
                    num_inference_steps: int = 25, guidance_scale: float = 4.0, seed: Optional[int] = None,
                    noise=None, latents: Optional[Float[Tensor, "b d"]] = None, sampler=None,
                    callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None, mode: Optional[str] = None,
                    output_type: str = "pt") -> PriorOutput:
    """CLIP image embeddings of prompts with a Kandinsky prior (diffusers' KandinskyPriorPipeline /
    KandinskyV22PriorPipeline __call__): PriorOutput(image_embeds, negative_image_embeds)."""
    _check_steps(num_inference_steps)
    prompt, negative = _prompts(prompt, negative_prompt)
    prior = _part(components, "prior")
    noise_src = noise_source(seed, noise)
    smp = resolve_sampler(getattr(components, "scheduler", None), sampler, default=_DEFAULT_SCHEDULER)
    schedule = smp.schedule(num_inference_steps)
    shape = (len(prompt) * num_images_per_prompt, prior.config.embedding_dim)
    x = initial_noise(shape, noise_src, latents) * np.float32(schedule.init_noise_sigma)
    embeds = _run_prior(components, prompt, negative, x, schedule, smp, noise_src, guidance_scale,
                        num_images_per_prompt, callback, mode)
    return _finish(components, embeds, negative, output_type)


@diffusers_names
def kandinsky_prior_emb2emb(components, prompt, image, negative_prompt=None, *, strength: float = 0.3,
                            num_images_per_prompt: int = 1, num_inference_steps: int = 25,
                            guidance_scale: float = 4.0, seed: Optional[int] = None, noise=None, sampler=None,
                            callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None,
                            mode: Optional[str] = None, output_type: str = "pt") -> PriorOutput:
    """CLIP image embeddings that start from reference images' embeddings noised to `strength` (diffusers'
    KandinskyV22PriorEmb2EmbPipeline). image: PIL / numpy images, pixel values [b, 3, h, w] or embeddings [b, d]."""
    _check_steps(num_inference_steps)
    prompt, negative = _prompts(prompt, negative_prompt)
    images = list(image) if isinstance(image, (list, tuple)) else [image]
    if all(isinstance(i, (Tensor, np.ndarray)) and i.ndim in (2, 4) for i in images):
        refs = [encode_reference_image(components, i, num_images_per_prompt) for i in images]
        init = mops.concat(refs, axis=0) if len(refs) > 1 else refs[0]
    else:
        init = encode_reference_image(components, images, num_images_per_prompt)
    batch = len(prompt) * num_images_per_prompt
    if batch > init.shape[0]:
        if batch % init.shape[0]:
            raise ValueError(f"kandinsky_prior_emb2emb: cannot repeat {init.shape[0]} image embeddings to "
                             f"{batch} prompts")
        init = mops.concat([init] * (batch // init.shape[0]), axis=0)
    noise_src = noise_source(seed, noise)
    smp = resolve_sampler(getattr(components, "scheduler", None), sampler, default=_DEFAULT_SCHEDULER)
    schedule = make_schedule(smp, num_inference_steps, strength)
    x = add_noise(schedule, init, noise_src.draw(tuple(init.shape)), 0)
    embeds = _run_prior(components, prompt, negative, x, schedule, smp, noise_src, guidance_scale,
                        num_images_per_prompt, callback, mode)
    return _finish(components, embeds, negative, output_type)


def _interpolation(components, images_and_prompts, weights, negative_prompt, negative_prior_prompt, *,
                   tile_images: bool, num_images_per_prompt: int, seed, noise, output_type, **kw) -> tuple:
    """(weighted embeddings, one per condition, the negative embedding): the prompts' prior embeddings [n, d] and
    the images' CLIP embeddings (tiled to n rows with tile_images), then the prior of `negative_prompt`."""
    if len(images_and_prompts) != len(weights):
        raise ValueError(f"kandinsky_prior_interpolate: {len(images_and_prompts)} images_and_prompts but "
                         f"{len(weights)} weights")
    kw = dict(kw, num_images_per_prompt=num_images_per_prompt, noise=noise_source(seed, noise))
    parts = []
    for cond, weight in zip(images_and_prompts, weights):
        if isinstance(cond, str):
            emb = kandinsky_prior(components, cond, negative_prior_prompt, **kw).image_embeds
        elif isinstance(cond, (Tensor, np.ndarray)) or hasattr(cond, "convert"):
            emb = encode_reference_image(components, cond if not hasattr(cond, "convert") else [cond])
            emb = mops.tile(emb, (num_images_per_prompt, 1)) if tile_images else emb
        else:
            raise ValueError(f"kandinsky_prior_interpolate: images_and_prompts holds {type(cond).__name__}; "
                             f"expected str, PIL image or Tensor")
        parts.append(emb * np.float32(weight))
    zero = kandinsky_prior(components, negative_prompt, negative_prior_prompt, **kw)
    return parts, zero.negative_image_embeds if negative_prompt == "" else zero.image_embeds


@diffusers_names
def kandinsky_prior_interpolate(components, images_and_prompts: Sequence, weights: Sequence[float], *,
                                num_images_per_prompt: int = 1, num_inference_steps: int = 25,
                                latents: Optional[Float[Tensor, "b d"]] = None, negative_prior_prompt=None,
                                negative_prompt: str = "", guidance_scale: float = 4.0, seed: Optional[int] = None,
                                noise=None, sampler=None, mode: Optional[str] = None,
                                output_type: str = "pt") -> PriorOutput:
    """The weighted sum of prompts' prior embeddings and images' CLIP embeddings, with the negative embedding of
    `negative_prompt` (diffusers' KandinskyV22PriorPipeline.interpolate: [n, d] each; the prior runs draw from
    one noise source, in order)."""
    parts, zero = _interpolation(components, images_and_prompts, weights, negative_prompt, negative_prior_prompt,
                                 tile_images=True, num_images_per_prompt=num_images_per_prompt, seed=seed,
                                 noise=noise, output_type=output_type, num_inference_steps=num_inference_steps,
                                 latents=latents, guidance_scale=guidance_scale, sampler=sampler, mode=mode)
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return _output(total, zero, output_type)


@diffusers_names
def kandinsky21_prior_interpolate(components, images_and_prompts: Sequence, weights: Sequence[float], *,
                                  num_images_per_prompt: int = 1, num_inference_steps: int = 25,
                                  latents: Optional[Float[Tensor, "b d"]] = None, negative_prior_prompt=None,
                                  negative_prompt: str = "", guidance_scale: float = 4.0,
                                  seed: Optional[int] = None, noise=None, sampler=None, mode: Optional[str] = None,
                                  output_type: str = "pt") -> PriorOutput:
    """Kandinsky 2.1's interpolate (diffusers' KandinskyPriorPipeline.interpolate): every weighted row summed into
    one embedding [1, d] (images enter once, prompts with their num_images_per_prompt rows); negative [n, d]."""
    parts, zero = _interpolation(components, images_and_prompts, weights, negative_prompt, negative_prior_prompt,
                                 tile_images=False, num_images_per_prompt=num_images_per_prompt, seed=seed,
                                 noise=noise, output_type=output_type, num_inference_steps=num_inference_steps,
                                 latents=latents, guidance_scale=guidance_scale, sampler=sampler, mode=mode)
    total = mops.concat(parts, axis=0).sum(axis=0, keepdims=True)
    return _output(total, zero, output_type)


def _cli(args, components, kwargs: dict) -> tuple:
    raise ValueError(f"{components.pipeline_class} makes image embeddings, not images: give the decoder folder as "
                     f"--model and this folder as --prior (or call msdiff.recipes.kandinsky_prior from Python)")


FAMILIES = (Family("kandinsky_prior", kandinsky_prior,
                   ("KandinskyPriorPipeline", "KandinskyV22PriorPipeline", "KandinskyV22PriorEmb2EmbPipeline"),
                   {}, (), steps=25, prepare=_cli,
                   help="image embeddings only: run it through a decoder with --prior"),)
