"""Text-to-image with PixArt-alpha (diffusers' PixArtAlphaPipeline; Chen et al. 2023).

The prompt is lower-cased and stripped (the pipeline's clean_caption=False path), tokenized to 120 T5 tokens
with its attention mask and encoded by the T5 encoder; classifier-free guidance runs the transformer on
[negative; prompt] and guides the whole output, of which a learned-sigma net's first in_channels channels (eps)
go to the sampler. Nets that use additional conditions get the (binned) pixel height / width and their ratio.
With `use_resolution_binning` the size is first mapped to the nearest of PixArt's 33 aspect-ratio bins and the
decoded image resized and centre-cropped back. All noise comes from `noise` (recorded arrays or a
callable(shape), as `steps.NoiseSource`) or numpy seeded by `seed`, in diffusers' draw order.
"""
import warnings
from typing import Callable, Optional, Sequence, Union

import mindspore as ms
import numpy as np
from jaxtyping import Float, Int
from mindspore import Tensor
from mindspore import ops as mops

from .. import ops
from ..conditioning import CFG, NetInputs, TakeChannels, compose
from ..samplers import noise_source, resolve_sampler, sample
from ..settings import resolve_mode
from .family import Family, diffusers_names
from .images import postprocess
from .latents import decode, initial_noise

_DEFAULT_SCHEDULER = {"_class_name": "DPMSolverMultistepScheduler"}
# PixArt's 1024-pixel aspect-ratio bins (height x width); the 512 / 256 bins are these halved / quartered, and a
# bin's ratio key is round(height / width, 2), as in diffusers' ASPECT_RATIO_*_BIN tables.
_BINS_1024 = tuple(tuple(int(v) for v in hw.split("x")) for hw in """
    512x2048 512x1856 576x1792 576x1728 576x1664 640x1600 640x1536 704x1472 704x1408 704x1344 768x1344 768x1280
    832x1216 832x1152 896x1152 896x1088 960x1088 960x1024 1024x1024 1024x960 1088x960 1088x896 1152x896 1152x832
    1216x832 1280x768 1344x768 1408x704 1472x704 1536x640 1600x640 1728x576 2048x512""".split())
_BIN_DIVISOR = {128: 1, 64: 2, 32: 4}


def transformer_of(components):
    """The pipeline's PixArt net: `components.transformer`, or `extra["transformer"]` of `msdiff.load_pipeline`."""
    net = getattr(components, "transformer", None) or getattr(components, "extra", {}).get("transformer")
    if net is None:
        raise ValueError("the components have no 'transformer' (a PixArtTransformer2DModel)")
    return net


def classify_height_width_bin(height: int, width: int, sample_size: int) -> tuple:
    """The (height, width) bin nearest in aspect ratio for a net of this sample_size (diffusers' binning)."""
    if sample_size not in _BIN_DIVISOR:
        raise ValueError(f"use_resolution_binning needs a transformer sample_size of 128, 64 or 32 (PixArt's 1024, "
                         f"512 and 256 bins), got {sample_size}; pass use_resolution_binning=False")
    div = _BIN_DIVISOR[sample_size]
    ar = float(height / width)
    h, w = min(_BINS_1024, key=lambda hw: abs(round(hw[0] / hw[1], 2) - ar))
    return h // div, w // div


def resize_and_crop(image: Float[Tensor, "b c h w"], height: int, width: int) -> Float[Tensor, "b c h2 w2"]:
    """Bilinear resize covering (height, width), then a centre crop to it (diffusers' resize_and_crop_tensor)."""
    h, w = image.shape[2], image.shape[3]
    if (h, w) == (height, width):
        return image
    ratio = max(height / h, width / w)
    rh, rw = int(h * ratio), int(w * ratio)
    image = ops.interpolate(image, size=(rh, rw), mode="bilinear", align_corners=False)
    top, left = (rh - height) // 2, (rw - width) // 2
    return image[:, :, top:top + height, left:left + width]


def _texts(prompt, batch: Optional[int] = None) -> list:
    texts = [prompt] if isinstance(prompt, str) else list(prompt)
    if batch is not None and len(texts) != batch:
        raise ValueError(f"negative_prompt has {len(texts)} entries but prompt has {batch}")
    return [t.lower().strip() for t in texts]


def _encode(components, texts: list, max_length: int) -> tuple:
    tok, enc = components.tokenizer, components.text_encoder
    if tok is None or enc is None:
        raise ValueError("the components have no tokenizer / text_encoder: pass prompt_embeds and "
                         "prompt_attention_mask (and the negative ones for guidance)")
    toks = tok(texts, padding="max_length", max_length=max_length, truncation=True)
    for text in toks.truncated:
        if text:
            warnings.warn(f"The following part of your input was truncated because T5 can only handle sequences up "
                          f"to {max_length} tokens: {text}", stacklevel=3)
    mask = Tensor(toks.attention_mask)
    return enc(Tensor(toks.input_ids), mask).astype(ms.float32), mask


def encode_prompt_t5(components, prompt=None, negative_prompt="", *, guidance: bool = True,
                     num_images_per_prompt: int = 1, max_sequence_length: int = 120, prompt_embeds=None,
                     prompt_attention_mask=None, negative_prompt_embeds=None,
                     negative_prompt_attention_mask=None) -> tuple:
    """(embeds, mask, negative embeds, negative mask) from T5, as PixArtAlphaPipeline.encode_prompt (no caption
    cleaning); the negatives are None without guidance; each row repeated num_images_per_prompt times."""
    if prompt_embeds is None:
        if prompt is None:
            raise ValueError("pass prompt or prompt_embeds")
        prompt_embeds, prompt_attention_mask = _encode(components, _texts(prompt), max_sequence_length)
    elif prompt_attention_mask is None:
        raise ValueError("prompt_embeds need prompt_attention_mask (the T5 padding mask)")
    batch, length = prompt_embeds.shape[0], prompt_embeds.shape[1]
    if guidance and negative_prompt_embeds is None:
        neg = [negative_prompt] * batch if isinstance(negative_prompt, str) else negative_prompt
        negative_prompt_embeds, negative_prompt_attention_mask = _encode(components, _texts(neg, batch), length)
    elif guidance and negative_prompt_attention_mask is None:
        raise ValueError("negative_prompt_embeds need negative_prompt_attention_mask (the T5 padding mask)")

    def rows(x):
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
        return mops.repeat_interleave(x, num_images_per_prompt, 0) if num_images_per_prompt > 1 else x

    embeds = (rows(prompt_embeds).astype(ms.float32), rows(prompt_attention_mask))
    if not guidance:
        return embeds + (None, None)
    return embeds + (rows(negative_prompt_embeds).astype(ms.float32), rows(negative_prompt_attention_mask))


def pixart_model(net, context: Tensor, mask: Tensor, resolution: Tensor, aspect_ratio: Tensor,
                 guidance_scale: float):
    """The PixArt transformer as the loop's Model: T5 context and mask, size conditions, guidance on
    [negative; prompt], the eps half of a learned-sigma output."""
    pieces = [TakeChannels(net.config.in_channels)] if net.config.output_channels // 2 == net.config.in_channels \
        else []
    inputs = NetInputs(encoder_hidden_states=context, encoder_attention_mask=mask, resolution=resolution,
                       aspect_ratio=aspect_ratio)
    return compose(net, inputs, *pieces, guidance=CFG(guidance_scale) if guidance_scale > 1 else None)


@diffusers_names
def pixart(components, prompt: Union[str, Sequence[str], None] = None, *, negative_prompt="",
           num_inference_steps: int = 20, guidance_scale: float = 4.5, height: Optional[int] = None,
           width: Optional[int] = None, prompt_embeds: Optional[Float[Tensor, "b m c"]] = None,
           prompt_attention_mask: Optional[Int[Tensor, "b m"]] = None,
           negative_prompt_embeds: Optional[Float[Tensor, "b m c"]] = None,
           negative_prompt_attention_mask: Optional[Int[Tensor, "b m"]] = None, num_images_per_prompt: int = 1,
           seed: Optional[int] = None, noise=None, latents: Optional[Float[Tensor, "b c h w"]] = None, sampler=None,
           callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None, mode: Optional[str] = None,
           output_type: str = "pil", use_resolution_binning: bool = True, max_sequence_length: int = 120):
    """Images for the prompt(s) from a PixArt-alpha pipeline (diffusers' PixArtAlphaPipeline, clean_caption=False).

    sampler: None (the pipeline's scheduler), a scheduler class name / config dict, or a Sampler. callback(step,
    latents) runs after every net call; returning True stops early. output_type "latent" returns the final latents.
    mode "graph" compiles the guided transformer call and the sampler step (T5 runs once, in PyNative).
    """
    mode = resolve_mode(mode)
    if output_type not in ("pil", "np", "latent"):
        raise ValueError(f"output_type must be 'pil', 'np' or 'latent', got {output_type!r}")
    if num_inference_steps < 2:
        raise ValueError("num_inference_steps must be >= 2: after a single step PixArtAlphaPipeline returns the "
                         "scheduler's x0 prediction (DDIM only), which this recipe does not reproduce")
    net = transformer_of(components)
    cfg = net.config
    factor = 2 ** (len(components.vae.config.block_out_channels) - 1)
    height = height or cfg.sample_size * factor
    width = width or cfg.sample_size * factor
    orig = (height, width)
    if use_resolution_binning:
        height, width = classify_height_width_bin(height, width, cfg.sample_size)
    if height % 8 or width % 8:
        raise ValueError(f"height and width have to be divisible by 8 but are {height} and {width}")
    if (height // factor) % cfg.patch_size or (width // factor) % cfg.patch_size:
        raise ValueError(f"height / width {height}x{width} give a latent grid that is not a multiple of the "
                         f"transformer's patch_size {cfg.patch_size}")
    if prompt is None and prompt_embeds is None:
        raise ValueError("pass prompt or prompt_embeds")
    guided = guidance_scale > 1
    emb, mask, neg, neg_mask = encode_prompt_t5(
        components, prompt, negative_prompt, guidance=guided, num_images_per_prompt=num_images_per_prompt,
        max_sequence_length=max_sequence_length, prompt_embeds=prompt_embeds,
        prompt_attention_mask=prompt_attention_mask, negative_prompt_embeds=negative_prompt_embeds,
        negative_prompt_attention_mask=negative_prompt_attention_mask)
    if guided:
        if tuple(neg.shape) != tuple(emb.shape):
            raise ValueError(f"negative_prompt_embeds {tuple(neg.shape)} and prompt_embeds {tuple(emb.shape)} "
                             f"must have the same shape")
        emb, mask = mops.concat([neg, emb], axis=0), mops.concat([neg_mask, mask], axis=0)
    mask = mask.astype(ms.int32)
    b = emb.shape[0] // 2 if guided else emb.shape[0]

    smp = resolve_sampler(getattr(components, "scheduler", None), sampler, default=_DEFAULT_SCHEDULER)
    schedule = smp.schedule(num_inference_steps)
    shape = (b, cfg.in_channels, height // factor, width // factor)
    noise_src = noise_source(seed, noise)
    x = initial_noise(shape, noise_src, latents)
    if schedule.init_noise_sigma != 1.0:
        x = x * np.float32(schedule.init_noise_sigma)

    # resolution / aspect ratio in the net's dtype, as the pipeline casts them to the embeddings' dtype
    rows = 2 * b if guided else b
    resolution = Tensor(np.tile(np.array([[height, width]], np.float32), (rows, 1))).astype(net.compute_dtype)
    aspect_ratio = Tensor(np.full((rows, 1), height / width, np.float32)).astype(net.compute_dtype)
    model = pixart_model(net, emb, mask, resolution, aspect_ratio, guidance_scale)
    x = sample(model, x, schedule, smp, noise_src, callback, mode=mode)
    if output_type == "latent":
        return x
    image = decode(components, x, vae_dtype="float32")
    if use_resolution_binning:
        image = resize_and_crop(image, *orig)
    return postprocess(image, output_type)


def _cli(args, components, kwargs: dict) -> tuple:
    """An explicit --size runs as given (diffusers would bin it to the nearest trained aspect ratio)."""
    if "width" in kwargs:
        kwargs["use_resolution_binning"] = False
    kwargs.setdefault("prompt", "")
    return pixart, kwargs


FAMILIES = (Family("pixart", pixart, ("PixArtAlphaPipeline",), {"prompt": "prompt", "negative_prompt": "negative_prompt",
                                                                "guidance": "guidance_scale", "sampler": "sampler",
                                                                "size": "size"}, steps=20, prepare=_cli,
                   help="--prompt, --guidance (default 4.5), --size (exact: no binning) (steps 20)"),)
