"""Text-to-image with Stable Diffusion 3 (diffusers' StableDiffusion3Pipeline; Esser et al. 2024).

Three text encoders: the penultimate hidden states of two CLIPTextModelWithProjection (CLIP-L, CLIP-G: with
clip_skip k, hidden_states[-(k + 2)], never normed) are concatenated along channels, zero-padded to the T5 width
and put before T5's tokens (or, without text_encoder_3, zeros of 77 tokens x joint_attention_dim); the two pooled
projections are concatenated into the pooled conditioning. The MMDiT predicts the flow velocity, guided on
[negative; prompt], and the flow-match Euler sampler integrates it; the VAE decodes latents / scaling_factor +
shift_factor. Noise comes from `noise` / `seed` (or `latents`), in diffusers' draw order.
"""
import warnings
from typing import Callable, Optional, Sequence, Union

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..conditioning import CFG, NetInputs, compose
from ..samplers import noise_source, resolve_sampler, sample
from ..settings import resolve_mode
from .family import Family, diffusers_names
from .images import postprocess
from .latents import initial_noise, vae_in

_DEFAULT_SCHEDULER = {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0}


def _part(components, name: str, required: bool = True):
    """A pipeline component by its model_index name (a Components field or one of `extra`)."""
    value = getattr(components, name, None)
    if value is None:
        value = getattr(components, "extra", {}).get(name)
    if value is None and required:
        raise ValueError(f"the components have no {name!r} (StableDiffusion3Pipeline needs it)")
    return value


def _texts(prompt, what: str, batch: Optional[int] = None) -> list:
    texts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"{what} must be a str or a list of str, got {type(prompt).__name__}")
    if batch is not None and len(texts) != batch:
        raise ValueError(f"{what} has {len(texts)} entries but prompt has {batch}")
    return list(texts)


def _tokens(tok, texts: list, max_length: int, what: str):
    toks = tok(texts, padding="max_length", max_length=max_length, truncation=True)
    for text in toks.truncated:
        if text:
            warnings.warn(f"The following part of your input was truncated because {what} can only handle sequences "
                          f"up to {max_length} tokens: {text}", stacklevel=4)
    return Tensor(toks.input_ids)


def _clip(components, index: int, texts: list, clip_skip: Optional[int]) -> tuple:
    """(hidden_states[-(clip_skip or 0) - 2] [b, 77, d], pooled projection [b, p]) of CLIP encoder `index`."""
    suffix = "" if index == 0 else "_2"
    tok, enc = _part(components, "tokenizer" + suffix), _part(components, "text_encoder" + suffix)
    _, pooled, hidden = enc(_tokens(tok, texts, tok.model_max_length, "CLIP"))
    return hidden[-((clip_skip or 0) + 2)].astype(ms.float32), pooled.astype(ms.float32)


def _t5(components, texts: list, max_sequence_length: int, width: int) -> Tensor:
    enc = _part(components, "text_encoder_3", required=False)
    if enc is None:  # diffusers: zeros of the CLIP tokenizer's length x joint_attention_dim
        return mops.zeros((len(texts), _part(components, "tokenizer").model_max_length, width), ms.float32)
    tok = _part(components, "tokenizer_3")
    return enc(_tokens(tok, texts, max_sequence_length, "`max_sequence_length`")).astype(ms.float32)


def _encode_one(components, p1: list, p2: list, p3: list, clip_skip, max_sequence_length: int, width: int) -> tuple:
    h1, pool1 = _clip(components, 0, p1, clip_skip)
    h2, pool2 = _clip(components, 1, p2, clip_skip)
    clip = mops.concat([h1, h2], axis=-1)
    t5 = _t5(components, p3, max_sequence_length, width)
    pad = t5.shape[-1] - clip.shape[-1]
    if pad < 0:
        raise ValueError(f"the CLIP embeddings are {clip.shape[-1]} wide, more than the T5 / joint width "
                         f"{t5.shape[-1]} they are padded to")
    if pad:
        clip = mops.concat([clip, mops.zeros(clip.shape[:2] + (pad,), ms.float32)], axis=-1)
    return mops.concat([clip, t5], axis=-2), mops.concat([pool1, pool2], axis=-1)


def encode_prompt_sd3(components, prompt, prompt_2=None, prompt_3=None, negative_prompt=None,
                      negative_prompt_2=None, negative_prompt_3=None, *, guidance: bool = True,
                      num_images_per_prompt: int = 1, clip_skip: Optional[int] = None,
                      max_sequence_length: int = 256) -> tuple:
    """(embeds [b, 77 + T5 tokens, joint], pooled [b, 2 CLIP widths], negative embeds, negative pooled) as
    StableDiffusion3Pipeline.encode_prompt; the negatives are None without guidance (they never use clip_skip)."""
    width = _part(components, "transformer").config.joint_attention_dim
    p1 = _texts(prompt, "prompt")
    b = len(p1)
    p2 = _texts(prompt_2 or prompt, "prompt_2", b)
    p3 = _texts(prompt_3 or prompt, "prompt_3", b)
    embeds = _encode_one(components, p1, p2, p3, clip_skip, max_sequence_length, width)
    negs = (None, None)
    if guidance:
        n1 = negative_prompt or ""
        n2, n3 = negative_prompt_2 or n1, negative_prompt_3 or n1
        n1, n2, n3 = ([n] * b if isinstance(n, str) else n for n in (n1, n2, n3))
        negs = _encode_one(components, _texts(n1, "negative_prompt", b), _texts(n2, "negative_prompt_2", b),
                           _texts(n3, "negative_prompt_3", b), None, max_sequence_length, width)

    def rows(x):
        return None if x is None or num_images_per_prompt == 1 else mops.repeat_interleave(x, num_images_per_prompt, 0)

    return tuple(x if rows(x) is None else rows(x) for x in embeds + negs)


def calculate_shift(image_seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096, base_shift: float = 0.5,
                    max_shift: float = 1.15) -> float:
    """mu of dynamic shifting: linear in the token count between (base_seq_len, base_shift) and (max_seq_len,
    max_shift) (diffusers' calculate_shift)."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return image_seq_len * m + base_shift - m * base_seq_len


def _sampler(components, sampler, mu: Optional[float], seq_len: int):
    config = sampler if isinstance(sampler, dict) else getattr(components, "scheduler", None)
    if sampler is None or isinstance(sampler, dict):
        if mu is None and isinstance(config, dict) and config.get("use_dynamic_shifting"):
            mu = calculate_shift(seq_len, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                                 config.get("base_shift", 0.5), config.get("max_shift", 1.16))
    options = {} if mu is None else {"mu": mu}
    return resolve_sampler(getattr(components, "scheduler", None), sampler, default=_DEFAULT_SCHEDULER, **options)


@diffusers_names
def sd3(components, prompt: Union[str, Sequence[str], None] = None, prompt_2=None, prompt_3=None, *,
        negative_prompt=None, negative_prompt_2=None, negative_prompt_3=None, num_inference_steps: int = 28,
        guidance_scale: float = 7.0, height: Optional[int] = None, width: Optional[int] = None,
        num_images_per_prompt: int = 1, clip_skip: Optional[int] = None, max_sequence_length: int = 256,
        mu: Optional[float] = None, seed: Optional[int] = None, noise=None,
        latents: Optional[Float[Tensor, "b c h w"]] = None, sampler=None,
        callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None, mode: Optional[str] = None,
        output_type: str = "pil"):
    """Images for the prompt(s) from a Stable Diffusion 3 pipeline (diffusers' StableDiffusion3Pipeline).

    prompt_2 / prompt_3 go to CLIP-G / T5 (default: prompt), likewise the negative ones. sampler: None (the
    pipeline's scheduler), a scheduler class name / config dict, or a Sampler; mu: dynamic shifting's mu (computed
    from the token count as diffusers when the scheduler uses dynamic shifting). callback(step, latents) runs after
    every net call; True stops early. output_type "latent" returns the final latents. mode "graph" compiles the
    guided transformer call and the sampler step (the text encoders run once, in PyNative).
    """
    mode = resolve_mode(mode)
    if output_type not in ("pil", "np", "latent"):
        raise ValueError(f"output_type must be 'pil', 'np' or 'latent', got {output_type!r}")
    if prompt is None:
        raise ValueError("pass prompt (a str or a list of str)")
    if max_sequence_length > 512:
        raise ValueError(f"`max_sequence_length` cannot be greater than 512 but is {max_sequence_length}")
    if num_inference_steps < 1 or num_images_per_prompt < 1:
        raise ValueError("num_inference_steps and num_images_per_prompt must be >= 1")
    net = _part(components, "transformer")
    cfg = net.config
    vae = _part(components, "vae")
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if vae.config.shift_factor is None:
        raise ValueError("the VAE config has no shift_factor (StableDiffusion3Pipeline decodes latents / "
                         "scaling_factor + shift_factor)")
    height = height or cfg.sample_size * factor
    width = width or cfg.sample_size * factor
    if height % (factor * cfg.patch_size) or width % (factor * cfg.patch_size):
        raise ValueError(f"`height` and `width` have to be divisible by {factor * cfg.patch_size} but are {height} "
                         f"and {width}")
    guided = guidance_scale > 1
    emb, pooled, neg, neg_pooled = encode_prompt_sd3(
        components, prompt, prompt_2, prompt_3, negative_prompt, negative_prompt_2, negative_prompt_3,
        guidance=guided, num_images_per_prompt=num_images_per_prompt, clip_skip=clip_skip,
        max_sequence_length=max_sequence_length)
    b = emb.shape[0]
    if guided:
        emb, pooled = mops.concat([neg, emb], axis=0), mops.concat([neg_pooled, pooled], axis=0)

    shape = (b, cfg.in_channels, height // factor, width // factor)
    smp = _sampler(components, sampler, mu, (shape[2] // cfg.patch_size) * (shape[3] // cfg.patch_size))
    schedule = smp.schedule(num_inference_steps)
    noise_src = noise_source(seed, noise)
    x = initial_noise(shape, noise_src, latents)
    if schedule.init_noise_sigma != 1.0:
        x = x * np.float32(schedule.init_noise_sigma)
    model = compose(net, NetInputs(encoder_hidden_states=emb, pooled_projections=pooled),
                    guidance=CFG(guidance_scale) if guided else None)
    x = sample(model, x, schedule, smp, noise_src, callback, mode=mode)
    if output_type == "latent":
        return x
    z = x / np.float32(vae.config.scaling_factor) + np.float32(vae.config.shift_factor)
    image = vae_in(components, "float32").decode(z).astype(ms.float32)
    return postprocess(image, output_type)


def _cli(args, components, kwargs: dict) -> tuple:
    kwargs.setdefault("prompt", "")
    return sd3, kwargs


FAMILIES = (Family("sd3", sd3, ("StableDiffusion3Pipeline",),
                   {"prompt": "prompt", "negative_prompt": "negative_prompt", "guidance": "guidance_scale",
                    "sampler": "sampler", "size": "size"}, steps=28, prepare=_cli,
                   help="--prompt, --negative-prompt, --guidance (default 7.0), --size (steps 28)"),)
