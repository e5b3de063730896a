"""unCLIP / Karlo (diffusers' UnCLIPPipeline and UnCLIPImageVariationPipeline; Ramesh et al. 2022) as recipes.

Three stages, each a public function on the one loop: `unclip_prior` (CLIP text -> CLIP image embedding with the
PriorTransformer), `unclip_decoder` (UnCLIPTextProjModel turns image + text embeddings into the decoder's extra
context tokens and additive time embedding; the 64 px decoder predicts eps and a learned variance, guided on eps
with `conditioning.CFGVariance`) and `unclip_super_res` (the small image upscaled by antialiased bicubic
interpolation as extra input channels; super_res_first for every step but the last, super_res_last for that one).
Classifier-free guidance is on for both stages when either scale is above 1 (diffusers). All noise comes from
`noise` (a NoiseSource, recorded arrays or a callable(shape)) or numpy seeded by `seed`, in diffusers' draw order.
"""
import dataclasses
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..conditioning import CFG, CFGVariance, ExtraChannels, NetInputs, TakeChannels, compose, make_schedule, truncate
from ..samplers import FiniteTracker, Schedule, noise_source, resolve_sampler, sample
from .clip_image import clip_image_config, encode_image
from .deepfloyd_if import learned_variance
from .family import Family, diffusers_names
from .images import postprocess
from .kandinsky_prior import encode_prior_prompt
from .latents import initial_noise
from .prompts import _texts


def _part(components, name: str):
    value = getattr(components, "extra", {}).get(name)
    if value is None:
        raise ValueError(f"unCLIP: the components have no {name!r}")
    return value


def _sampler(components, name: str, sampler):
    config = _part(components, name)
    return resolve_sampler(config, sampler), config


def encode_prompt_unclip(components, prompt, num_images_per_prompt: int = 1, guidance: bool = True) -> tuple:
    """(text_embeds [b, d], last_hidden_state [b, n, d], attention mask [b, n]) of CLIP text with projection, each
    row num_images_per_prompt times; with guidance [""; prompt] (UnCLIPPipeline._encode_prompt)."""
    return encode_prior_prompt(components, _texts(prompt), None, num_images_per_prompt, guidance)


def unclip_prior(components, text: tuple, *, prior_num_inference_steps: int = 25, prior_guidance_scale: float = 4.0,
                 guidance: bool = True, prior_latents=None, noise=None, sampler=None, callback=None,
                 mode: Optional[str] = None) -> Float[Tensor, "b d"]:
    """CLIP image embeddings [b, d] of `text` (encode_prompt_unclip's triple) from the PriorTransformer and the
    prior_scheduler; guided [negative; prompt] rows when `guidance`."""
    prior = _part(components, "prior")
    smp, _ = _sampler(components, "prior_scheduler", sampler)
    noise = noise_source(None, noise)
    embeds, hidden, mask = text
    b = embeds.shape[0] // 2 if guidance else embeds.shape[0]
    schedule = make_schedule(smp, prior_num_inference_steps)
    x = initial_noise((b, prior.config.embedding_dim), noise, prior_latents)
    if schedule.init_noise_sigma != 1.0:
        x = x * np.float32(schedule.init_noise_sigma)
    dt = prior.compute_dtype
    model = compose(prior, NetInputs(proj_embedding=embeds.astype(dt), encoder_hidden_states=hidden.astype(dt),
                                     attention_mask=mask), guidance=CFG(prior_guidance_scale) if guidance else None)
    x = sample(model, x, schedule, smp, noise, callback, mode=mode)
    return prior.post_process_latents(x.astype(dt)).astype(ms.float32)


def unclip_decoder(components, image_embeddings: Tensor, text: tuple, *, decoder_num_inference_steps: int = 25,
                   decoder_guidance_scale: float = 8.0, guidance: bool = True, decoder_latents=None, noise=None,
                   sampler=None, callback=None, mode: Optional[str] = None, tracker=None) -> Float[Tensor, "b 3 h w"]:
    """The decoder's small image in [-1, 1] (clamped) from image embeddings [b, d] and the text triple."""
    decoder, text_proj = _part(components, "decoder"), _part(components, "text_proj")
    smp, config = _sampler(components, "decoder_scheduler", sampler)
    noise = noise_source(None, noise)
    embeds, hidden, mask = text
    context, time_embeds = text_proj(image_embeddings, embeds, hidden, guidance)
    k = text_proj.config.clip_extra_context_tokens
    mask = mops.concat([mops.ones((mask.shape[0], k), ms.int32), mask.astype(ms.int32)], axis=1)
    b = image_embeddings.shape[0]
    cfg = decoder.config
    schedule = make_schedule(smp, decoder_num_inference_steps)
    x = initial_noise((b, cfg.in_channels, cfg.sample_size, cfg.sample_size), noise, decoder_latents)
    if schedule.init_noise_sigma != 1.0:
        x = x * np.float32(schedule.init_noise_sigma)
    ch = cfg.in_channels
    learned = learned_variance(config, smp, sampler) and cfg.out_channels == 2 * ch
    pieces = [] if learned or cfg.out_channels == ch else [TakeChannels(ch)]
    g = None
    if guidance:
        g = CFGVariance(decoder_guidance_scale, ch) if learned else CFG(decoder_guidance_scale)
    model = compose(decoder, NetInputs(encoder_hidden_states=context, class_labels=time_embeds, attention_mask=mask),
                    *pieces, guidance=g)
    x = sample(model, x, schedule, smp, noise, callback, mode=mode, tracker=tracker)
    return mops.clamp(x, -1.0, 1.0)


def _bicubic_aa_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of torch's antialiased bicubic resize along one axis (a = -0.5, the window truncated at
    the edges and renormalised; the same filter as Pillow's BICUBIC)."""
    scale = n_in / n_out
    support = 2.0 * scale if scale >= 1.0 else 2.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0

    def cubic(x):
        x, a = abs(x), -0.5
        if x < 1.0:
            return ((a + 2) * x - (a + 3)) * x * x + 1
        if x < 2.0:
            return (((x - 5) * x + 8) * x - 4) * a
        return 0.0

    m = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        w = np.array([cubic((j - center + 0.5) * inv) for j in range(lo, hi)])
        m[i, lo:hi] = w / w.sum() if w.sum() != 0 else w
    return m


def upscale_bicubic(image: Float[Tensor, "b c h w"], height: int, width: int) -> Float[Tensor, "b c H W"]:
    """torch's F.interpolate(mode="bicubic", align_corners=False, antialias=True), computed in float64 on the host
    and returned as float32 (the pipeline's super-res input)."""
    x = image.astype(ms.float32).asnumpy().astype(np.float64)
    rows_m = _bicubic_aa_matrix(x.shape[2], height)
    cols_m = _bicubic_aa_matrix(x.shape[3], width)
    y = np.einsum("oh,bchw,pw->bcop", rows_m, x, cols_m)
    return Tensor(y.astype(np.float32))


def _tail(schedule: Schedule, start: int) -> Schedule:
    """The calls of a schedule from `start` on (their coefficients unchanged)."""
    cut = {f: getattr(schedule, f)[start:] for f in ("timesteps", "input_div", "coefs", "needs_noise", "noise_level")}
    return dataclasses.replace(schedule, _rows=(), **cut)


def unclip_super_res(components, image_small: Float[Tensor, "b 3 h w"], *, super_res_num_inference_steps: int = 7,
                     super_res_latents=None, noise=None, sampler=None, callback=None, mode: Optional[str] = None,
                     tracker=None) -> Float[Tensor, "b 3 H W"]:
    """The super-resolved image in [-1, 1]: super_res_first on every call but the last, super_res_last on that one,
    each reading the upscaled small image as extra channels."""
    first, last = _part(components, "super_res_first"), _part(components, "super_res_last")
    smp, _ = _sampler(components, "super_res_scheduler", sampler)
    noise = noise_source(None, noise)
    cfg = first.config
    size = cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0]
    b = image_small.shape[0]
    schedule = make_schedule(smp, super_res_num_inference_steps)
    x = initial_noise((b, cfg.in_channels // 2, size, size), noise, super_res_latents)
    if schedule.init_noise_sigma != 1.0:
        x = x * np.float32(schedule.init_noise_sigma)
    up = upscale_bicubic(image_small, size, size)
    n = len(schedule)
    if n > 1:
        x = sample(compose(first, ExtraChannels(up)), x, truncate(schedule, n - 1), smp, noise, callback, mode=mode,
                   tracker=tracker)
    return sample(compose(last, ExtraChannels(up)), x, _tail(schedule, n - 1), smp, noise, callback, mode=mode,
                  tracker=tracker)


def _finish(x: Tensor, output_type: str):
    if output_type == "pt":
        return x
    return postprocess(x, output_type)


def _decode_and_upscale(components, image_embeddings, text, guided, decoder_steps, decoder_guidance_scale,
                        decoder_latents, super_res_steps, super_res_latents, noise_src, callback, mode, tracker,
                        output_type):
    """The decoder and super-resolution stages both unCLIP pipelines end with, then the output form."""
    small = unclip_decoder(components, image_embeddings, text, decoder_num_inference_steps=decoder_steps,
                           decoder_guidance_scale=decoder_guidance_scale, guidance=guided,
                           decoder_latents=decoder_latents, noise=noise_src, callback=callback, mode=mode,
                           tracker=tracker)
    x = unclip_super_res(components, small, super_res_num_inference_steps=super_res_steps,
                         super_res_latents=super_res_latents, noise=noise_src, callback=callback, mode=mode,
                         tracker=tracker)
    return _finish(x, output_type)


@diffusers_names
def unclip_text_to_image(components, prompt=None, *, num_images_per_prompt: int = 1,
                         prior_num_inference_steps: int = 25, decoder_num_inference_steps: int = 25,
                         super_res_num_inference_steps: int = 7, prior_latents=None, decoder_latents=None,
                         super_res_latents=None, text_model_output=None, text_attention_mask=None,
                         prior_guidance_scale: float = 4.0, decoder_guidance_scale: float = 8.0,
                         output_type: str = "pil", seed: Optional[int] = None, noise=None,
                         callback: Optional[Callable] = None, mode: Optional[str] = None):
    """Images for the prompt(s) (diffusers' UnCLIPPipeline): prior -> decoder -> super-resolution.
    text_model_output: (text_embeds, last_hidden_state) instead of a prompt, with text_attention_mask."""
    guided = prior_guidance_scale > 1.0 or decoder_guidance_scale > 1.0
    if text_model_output is not None:
        if guided:
            raise ValueError("unclip_text_to_image: text_model_output with guidance needs the negative rows; pass "
                             "a prompt, or guidance scales <= 1")
        if text_attention_mask is None:
            raise ValueError("unclip_text_to_image: text_model_output needs text_attention_mask")
        rep = [Tensor(np.asarray(v)) if not isinstance(v, Tensor) else v
               for v in (text_model_output[0], text_model_output[1], text_attention_mask)]
        text = tuple(mops.repeat_interleave(v, num_images_per_prompt, 0) if num_images_per_prompt > 1 else v
                     for v in rep)
    elif prompt is None:
        raise ValueError("unclip_text_to_image: pass prompt (or text_model_output)")
    else:
        text = encode_prompt_unclip(components, prompt, num_images_per_prompt, guided)
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    image_embeddings = unclip_prior(components, text, prior_num_inference_steps=prior_num_inference_steps,
                                    prior_guidance_scale=prior_guidance_scale, guidance=guided,
                                    prior_latents=prior_latents, noise=noise_src, callback=callback, mode=mode)
    return _decode_and_upscale(components, image_embeddings, text, guided, decoder_num_inference_steps, decoder_guidance_scale,
                               decoder_latents, super_res_num_inference_steps, super_res_latents, noise_src,
                               callback, mode, tracker, output_type)


@diffusers_names
def unclip_image_variation(components, image=None, *, num_images_per_prompt: int = 1,
                           decoder_num_inference_steps: int = 25, super_res_num_inference_steps: int = 7,
                           decoder_latents=None, super_res_latents=None, image_embeddings=None,
                           decoder_guidance_scale: float = 8.0, output_type: str = "pil", seed: Optional[int] = None,
                           noise=None, callback: Optional[Callable] = None, mode: Optional[str] = None):
    """Variations of `image` (diffusers' UnCLIPImageVariationPipeline): its CLIP image embedding (or the given
    image_embeddings [b, d]) decodes with the empty prompt, then super-resolution."""
    if image is None and image_embeddings is None:
        raise ValueError("unclip_image_variation: pass image (or image_embeddings)")
    guided = decoder_guidance_scale > 1.0
    if image_embeddings is None:
        encoder = _part(components, "image_encoder")
        config = clip_image_config(_part(components, "feature_extractor"))
        emb = encode_image(encoder, image, config, num_images_per_prompt)
        emb = emb.reshape(emb.shape[0], emb.shape[-1])
    else:
        emb = image_embeddings if isinstance(image_embeddings, Tensor) else Tensor(np.asarray(image_embeddings,
                                                                                              np.float32))
        emb = mops.repeat_interleave(emb.astype(ms.float32), num_images_per_prompt, 0) \
            if num_images_per_prompt > 1 else emb.astype(ms.float32)
    batch = emb.shape[0] // num_images_per_prompt
    text = encode_prompt_unclip(components, [""] * batch, num_images_per_prompt, guided)
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    return _decode_and_upscale(components, emb, text, guided, decoder_num_inference_steps, decoder_guidance_scale,
                               decoder_latents, super_res_num_inference_steps, super_res_latents, noise_src,
                               callback, mode, tracker, output_type)


FAMILIES = (
    Family("unclip", unclip_text_to_image, ("UnCLIPPipeline",), {"prompt": "prompt"}, ("prompt",), steps=25,
           help="unCLIP / Karlo: prior -> decoder -> super-resolution (--steps: prior and decoder)",
           prepare=lambda args, components, kw: (unclip_text_to_image, _steps(kw))),
    Family("unclip_image_variation", unclip_image_variation, ("UnCLIPImageVariationPipeline",),
           {"image": "image"}, ("image",), steps=25, help="unCLIP / Karlo: variations of --image",
           prepare=lambda args, components, kw: (unclip_image_variation, _steps(kw, prior=False))),
)


def _steps(kwargs: dict, prior: bool = True) -> dict:
    """msdiff generate's --steps sets the prior's and the decoder's step counts."""
    kwargs = dict(kwargs)
    n = kwargs.pop("num_inference_steps", None)
    if n is not None:
        kwargs["decoder_num_inference_steps"] = n
        if prior:
            kwargs["prior_num_inference_steps"] = n
    return kwargs
