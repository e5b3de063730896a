"""GLIGEN grounded generation (diffusers' StableDiffusionGLIGENPipeline, gligen/gligen-generation-text-box): text
to image with phrases placed in boxes.

Each phrase's CLIP pooled embedding and its box become a grounding token (the UNet's position_net); the gated
fusers of every transformer block attend to them for the first `gligen_scheduled_sampling_beta` fraction of the
calls (scheduled sampling, Li et al. 2023 sec. 4) and are switched off after, by a per-call float inside the one
compiled step. Classifier-free guidance's unconditional rows get the null grounding (masks 0), as in diffusers.
"""
import warnings
from typing import Callable, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import Tensor
from mindspore import ops as mops

from ..conditioning import cfg_batch, make_schedule
from ..conditioning.pieces import Piece
from ..samplers import FiniteTracker, noise_source, resolve_sampler
from .family import Family, diffusers_names
from .gligen_inpaint import check_inpaint, inpaint_start
from .latents import finish, prepare_latents
from .sd import default_hw, default_steps, guidance_of, split_conditioning, text_conditioning, uses_cfg
from .sd_run import sd_denoise

MAX_OBJS = 30  # diffusers' max_objs: grounding tokens per image (more are dropped with a warning)


class Grounding(Piece):
    """The GLIGEN UNet's `gligen` keyword: position_net inputs (batched like the guidance-expanded sample) plus the
    fuser scale, 1 for calls i < int(beta * n) and 0 after (diffusers' enable_fuser(False) at that step)."""

    role = "residual"
    n_scales = 1

    def __init__(self, tensors: tuple, beta: float):
        self.inputs = (tuple(tensors),)
        self.beta = float(beta)
        self.key = ("gligen", len(tensors))

    def scales(self, i: int, n: int) -> tuple:
        return (float(i < int(self.beta * n)),)

    def add(self, res: dict, x, xin, t, kw: dict, inputs: tuple, scales, guidance) -> dict:
        out = dict(res)
        out["gligen"] = tuple(inputs[0]) + (scales[0],)
        return out


def check_grounding(phrases, boxes, what: str = "gligen_phrases") -> list:
    """The boxes as a list of 4 floats each; ValueError for a missing / mismatched list or a box outside [0, 1]."""
    if phrases is None or boxes is None:
        raise ValueError(f"gligen needs {what} and gligen_boxes (one phrase per box)")
    if isinstance(phrases, str):
        raise ValueError(f"{what} must be a list of strings (one per box), got the string {phrases!r}")
    if len(phrases) != len(boxes):
        raise ValueError(f"{what} has {len(phrases)} entries but gligen_boxes has {len(boxes)}: give one per box")
    if not boxes:
        raise ValueError("gligen_boxes is empty: give at least one box [xmin, ymin, xmax, ymax]")
    out = []
    for k, box in enumerate(boxes):
        b = np.asarray(box, np.float64)
        if b.shape != (4,) or not np.isfinite(b).all():
            raise ValueError(f"gligen_boxes[{k}] must be 4 finite numbers [xmin, ymin, xmax, ymax], got {box!r}")
        if (b < 0).any() or (b > 1).any():
            raise ValueError(f"gligen_boxes[{k}] = {list(box)} is outside [0, 1] (boxes are fractions of the image)")
        out.append([float(v) for v in b])
    return out


def phrase_embeddings(components, phrases: Sequence[str]) -> Tensor:
    """CLIP pooled embeddings [n, d] of the phrases, tokenized together padded to the longest (diffusers')."""
    if not all(isinstance(p, str) for p in phrases):
        raise ValueError(f"gligen_phrases must be strings, got {list(phrases)!r}")
    toks = components.tokenizer(list(phrases), padding="longest")
    ids, mask = Tensor(np.asarray(toks.input_ids)), Tensor(np.asarray(toks.attention_mask))
    return components.text_encoder(ids, mask)[1].astype(ms.float32)


def text_box_inputs(components, phrases, boxes, rows: int, guided: bool) -> tuple:
    """(boxes[r, 30, 4], masks[r, 30], embeddings[r, 30, d]) of the text-box position_net for `rows` images,
    with the unconditional copies (masks 0) first when `guided`."""
    if len(boxes) > MAX_OBJS:
        warnings.warn(f"More that {MAX_OBJS} objects found. Only first {MAX_OBJS} objects will be processed.",
                      FutureWarning)
        phrases, boxes = phrases[:MAX_OBJS], boxes[:MAX_OBJS]
    n = len(boxes)
    dim = components.unet.config.cross_attention_dim
    dim = dim if isinstance(dim, int) else dim[0]
    emb = phrase_embeddings(components, phrases)
    if emb.shape[-1] != dim:
        raise ValueError(f"the text encoder's pooled size {emb.shape[-1]} differs from the UNet's cross_attention_dim "
                         f"{dim}")
    box = np.zeros((1, MAX_OBJS, 4), np.float32)
    box[0, :n] = boxes
    mask = np.zeros((1, MAX_OBJS), np.float32)
    mask[0, :n] = 1
    embeds = mops.cat((emb, mops.zeros((MAX_OBJS - n, dim), ms.float32)), axis=0).expand_dims(0)
    box, mask = Tensor(np.repeat(box, rows, 0)), Tensor(np.repeat(mask, rows, 0))
    embeds = mops.tile(embeds, (rows, 1, 1))
    if not guided:
        return box, mask, embeds
    return cfg_batch(box, box), cfg_batch(mops.zeros_like(mask), mask), cfg_batch(embeds, embeds)


def check_unet(components, kind: str) -> None:
    got = getattr(components.unet.config, "attention_type", "default")
    if got != kind:
        raise ValueError(f"this recipe needs a GLIGEN UNet with attention_type {kind!r}, the loaded one has {got!r}")


def check_beta(beta) -> float:
    """gligen_scheduled_sampling_beta as a float in [0, 1] (ValueError naming it otherwise)."""
    value = float(beta)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"gligen_scheduled_sampling_beta must be in [0, 1], got {beta!r}")
    return value


def grounded_images(components, grounding: Callable, prompt, negative_prompt, *, num_inference_steps, guidance_scale,
                    height, width, num_images_per_prompt, latents, output_type, seed, sampler, noise, callback, mode,
                    vae_dtype, conditioning: dict, inpaint_image=None, boxes=()):
    """The GLIGEN run shared by the grounded recipes: SD text conditioning, latents (or gligen_inpaint_image's
    start, recipes/gligen_inpaint.py), then the UNet with the Piece `grounding(rows, guided)` over the schedule,
    decoded."""
    text, micro = split_conditioning("gligen", conditioning)
    steps = default_steps(components, num_inference_steps)
    g = guidance_of(components, guidance_scale)
    height, width = default_hw(components, height, width)
    check_inpaint(components, inpaint_image, height, width)
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    guided = uses_cfg(components, g)
    emb = text_conditioning(components, prompt, negative_prompt, text, guidance=guided,
                            num_images_per_prompt=num_images_per_prompt, tracker=tracker)
    rows = emb.prompt_embeds.shape[0]
    smp = resolve_sampler(components.scheduler, sampler)
    schedule = make_schedule(smp, steps)
    if inpaint_image is None:
        x, pieces = prepare_latents(components, rows, height, width, noise_src, latents, schedule.init_noise_sigma), ()
    else:
        x, pieces = inpaint_start(components, inpaint_image, boxes, rows, height, width, noise_src, latents, schedule,
                                  vae_dtype)
    tracker.add("initial latents", x)
    pieces = (grounding(rows, guided),) + pieces
    x = sd_denoise(components, emb, micro, x, schedule, smp, noise_src, guidance_scale=g, height=height,
                   width=width, pieces=pieces, callback=callback, mode=mode, tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)


@diffusers_names
def gligen(components, prompt=None, negative_prompt=None, *, gligen_phrases=None, gligen_boxes=None,
           gligen_inpaint_image=None, gligen_scheduled_sampling_beta: float = 0.3,
           num_inference_steps: Optional[int] = None, guidance_scale: float = 7.5, height: Optional[int] = None,
           width: Optional[int] = None, num_images_per_prompt: int = 1, latents=None, output_type: str = "pil",
           seed: Optional[int] = None, sampler=None, noise=None, callback: Optional[Callable] = None,
           mode: Optional[str] = None, vae_dtype="float32", **conditioning):
    """Images from text with `gligen_phrases` placed in `gligen_boxes` ([xmin, ymin, xmax, ymax] fractions of the
    image, one box per phrase) (diffusers' StableDiffusionGLIGENPipeline); with gligen_inpaint_image (PIL / numpy
    image or path) and an inpainting UNet the boxes of that image are regenerated. Other arguments as in
    text_to_image."""
    boxes = check_grounding(gligen_phrases, gligen_boxes)
    beta = check_beta(gligen_scheduled_sampling_beta)
    check_unet(components, "gated")

    def grounding(rows: int, guided: bool) -> Grounding:
        return Grounding(text_box_inputs(components, list(gligen_phrases), boxes, rows, guided), beta)

    return grounded_images(components, grounding, prompt, negative_prompt, num_inference_steps=num_inference_steps,
                           guidance_scale=guidance_scale, height=height, width=width,
                           num_images_per_prompt=num_images_per_prompt, latents=latents, output_type=output_type,
                           seed=seed, sampler=sampler, noise=noise, callback=callback, mode=mode,
                           vae_dtype=vae_dtype, conditioning=conditioning, inpaint_image=gligen_inpaint_image,
                           boxes=boxes[:MAX_OBJS])


def parse_boxes(text: str) -> list:
    """--gligen-boxes "x0,y0,x1,y1; x0,y0,x1,y1; ..." -> [[x0, y0, x1, y1], ...] (ValueError naming the box)."""
    boxes = []
    for k, part in enumerate(str(text).split(";"), 1):
        values = [v.strip() for v in part.split(",")]
        if len(values) != 4:
            raise ValueError(f"--gligen-boxes: box {k} {part.strip()!r} needs 4 numbers x0,y0,x1,y1 (boxes separated "
                             f"by ';')")
        try:
            boxes.append([float(v) for v in values])
        except ValueError:
            raise ValueError(f"--gligen-boxes: box {k} {part.strip()!r} has a value that is not a number") from None
    return boxes


def _cli(args, components, kwargs: dict) -> tuple:
    if isinstance(kwargs.get("gligen_boxes"), str):
        kwargs = dict(kwargs, gligen_boxes=parse_boxes(kwargs["gligen_boxes"]))
    return gligen, kwargs


_CLI_OPTIONS = (
    ("--gligen-phrases", dict(nargs="+", default=None, help="GLIGEN: one phrase per box, placed in --gligen-boxes")),
    ("--gligen-boxes", dict(default=None, help="GLIGEN: boxes x0,y0,x1,y1 (fractions of the image in [0, 1]), one "
                                               "per phrase, separated by ';'")),
    ("--gligen-inpaint-image", dict(default=None, help="GLIGEN with an inpainting UNet: the image whose boxes are "
                                                       "regenerated")),
)

FAMILIES = (
    Family("gligen", gligen, ("StableDiffusionGLIGENPipeline",),
           {"prompt": "prompt", "negative_prompt": "negative_prompt", "guidance": "guidance_scale",
            "sampler": "sampler", "size": "size", "gligen_phrases": "gligen_phrases", "gligen_boxes": "gligen_boxes",
            "gligen_inpaint_image": "gligen_inpaint_image"},
           ("gligen_phrases", "gligen_boxes"), steps=30, prepare=_cli, cli_options=_CLI_OPTIONS,
           help="grounded text-to-image: --gligen-phrases placed in --gligen-boxes (one box per phrase)"),
)
