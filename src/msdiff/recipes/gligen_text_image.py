"""GLIGEN grounded by phrases and / or reference images (diffusers' StableDiffusionGLIGENTextImagePipeline,
anhnct/Gligen_Text_Image): text to image with, in each box, a phrase, a reference image, or both.

Each box gives two grounding tokens to the UNet's text-image position_net: one from the phrase's CLIP pooled
embedding, one from the image's CLIP image embedding, projected by the pipeline's `image_project`
(CLIPImageProjection) and rescaled to norm `gligen_normalize_constant` (28.7, as diffusers). A box without a phrase
(or without an image), or one masked by input_phrases_mask / input_images_mask, gets the learned null feature there.

As in diffusers 0.35.2: the fusers stay on for every step (the pipeline computes int(beta * steps) and never switches
them off, so gligen_scheduled_sampling_beta has no effect), and classifier-free guidance takes its unconditional
prediction from a UNet call with no grounding at all (every mask 0), its conditional one with the grounding; the
two run as one batch here.
"""
import os
import warnings
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from mindspore import Tensor
from mindspore import ops as mops

from ..conditioning import cfg_batch
from .clip_image import CLIPImageConfig, clip_image_config, encode_image
from .family import Family, diffusers_names
from .frames import as_pil
from .gligen import (_CLI_OPTIONS, MAX_OBJS, Grounding, check_beta, check_grounding, check_unet, grounded_images,
                     parse_boxes, phrase_embeddings)


def check_objects(phrases, images, boxes) -> tuple:
    """(phrases, images, boxes) as lists of equal length, None where a box has no phrase / image; ValueError for
    a missing or mismatched list, a box outside [0, 1] or a box with neither a phrase nor an image."""
    if phrases is None and images is None:
        raise ValueError("gligen_text_image needs gligen_phrases and / or gligen_images (one entry per box, None for "
                         "a box without one)")
    if images is not None and not isinstance(images, (list, tuple)):
        raise ValueError(f"gligen_images must be a list (one image or None per box), got {type(images).__name__}")
    if phrases is not None and not isinstance(phrases, (list, tuple)):
        raise ValueError(f"gligen_phrases must be a list (one string or None per box), got {phrases!r}")
    if boxes is None:
        raise ValueError("gligen_text_image needs gligen_boxes (one box [xmin, ymin, xmax, ymax] per object)")
    present = [(what, v) for what, v in (("gligen_phrases", phrases), ("gligen_images", images)) if v is not None]
    boxes_out = [check_grounding(entries, boxes, what) for what, entries in present][0]
    phrases = [None] * len(boxes) if phrases is None else list(phrases)
    images = [None] * len(boxes) if images is None else list(images)
    for k, (phrase, image) in enumerate(zip(phrases, images)):
        if phrase is not None and not isinstance(phrase, str):
            raise ValueError(f"gligen_phrases[{k}] must be a string or None, got {type(phrase).__name__}")
        if phrase is None and image is None:
            raise ValueError(f"gligen_boxes[{k}] has neither a phrase (gligen_phrases[{k}]) nor an image "
                             f"(gligen_images[{k}])")
    return phrases, images, boxes_out


def object_mask(values, what: str) -> np.ndarray:
    """diffusers' complete_mask: ones [MAX_OBJS]; an int scales them all, a list sets the first len(list)."""
    mask = np.ones(MAX_OBJS, np.float32)
    if values is None:
        return mask
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        return mask * np.float32(values)
    if not isinstance(values, (list, tuple)) or len(values) > MAX_OBJS:
        raise ValueError(f"{what} must be a number or a list of at most {MAX_OBJS} numbers, got {values!r}")
    try:
        mask[:len(values)] = np.asarray(values, np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must hold numbers (0 masks a box's feature), got {values!r}") from None
    return mask


def _image_parts(components) -> tuple:
    encoder, project = components.extra.get("image_encoder"), components.extra.get("image_project")
    processor = components.extra.get("processor")
    for name, part, kind in (("image_encoder", encoder, "a CLIPVisionModelWithProjection"),
                             ("image_project", project, "a CLIPImageProjection"),
                             ("processor", processor, "a CLIPProcessor")):
        if part is None:
            raise ValueError(f"gligen_text_image: gligen_images need the pipeline's {name} ({kind}), which is missing")
    return encoder, project, clip_image_config(processor) if isinstance(processor, dict) else CLIPImageConfig()


def image_feature(components, image, normalize_constant: float) -> Tensor:
    """diffusers' get_clip_feature of a reference image: image_project(CLIP image_embeds), rescaled to norm
    `normalize_constant` (computed in float32) -> [d]."""
    encoder, project, config = _image_parts(components)
    if isinstance(image, (str, os.PathLike)):
        image = as_pil(image)
    feature = project(encode_image(encoder, image, config)).astype(ms.float32).reshape(-1)
    return feature / mops.sqrt((feature * feature).sum()) * float(normalize_constant)


def _check_dim(feature: Tensor, dim: int, what: str) -> None:
    if feature.shape[-1] != dim:
        raise ValueError(f"gligen_text_image: the {what} size {feature.shape[-1]} differs from the UNet's "
                         f"cross_attention_dim {dim}")


def text_image_inputs(components, phrases, images, boxes, masks: tuple, normalize_constant: float, rows: int,
                      guided: bool) -> tuple:
    """(boxes, masks, phrases_masks, image_masks, phrase embeddings, image embeddings) of the text-image
    position_net for `rows` images, with the no-grounding copies (all zeros) first when `guided`."""
    n = len(boxes)
    dim = components.unet.config.cross_attention_dim
    dim = dim if isinstance(dim, int) else dim[0]
    box, has = np.zeros((MAX_OBJS, 4), np.float32), np.zeros(MAX_OBJS, np.float32)
    box[:n], has[:n] = boxes, 1
    text_mask, image_mask = np.zeros(MAX_OBJS, np.float32), np.zeros(MAX_OBJS, np.float32)
    text_emb, image_emb = [mops.zeros((1, dim), ms.float32)] * MAX_OBJS, [mops.zeros((1, dim), ms.float32)] * MAX_OBJS
    with_phrase = [k for k, p in enumerate(phrases) if p is not None]
    if with_phrase:
        pooled = phrase_embeddings(components, [phrases[k] for k in with_phrase])
        _check_dim(pooled, dim, "text encoder's pooled")
        for j, k in enumerate(with_phrase):
            text_emb[k], text_mask[k] = pooled[j:j + 1], 1
    for k, image in enumerate(images):
        if image is not None:
            feature = image_feature(components, image, normalize_constant)
            _check_dim(feature, dim, "projected image embedding")
            image_emb[k], image_mask[k] = feature.reshape(1, dim), 1
    text_mask, image_mask = text_mask * masks[0], image_mask * masks[1]

    def batch(a) -> Tensor:
        t = Tensor(a[None]) if isinstance(a, np.ndarray) else mops.cat(a, axis=0).expand_dims(0)
        t = mops.tile(t, (rows,) + (1,) * (t.ndim - 1))
        return cfg_batch(mops.zeros_like(t), t) if guided else t

    return tuple(batch(a) for a in (box, has, text_mask, image_mask, text_emb, image_emb))


@diffusers_names
def gligen_text_image(components, prompt=None, negative_prompt=None, *, gligen_phrases=None, gligen_images=None,
                      gligen_boxes=None, input_phrases_mask=None, input_images_mask=None,
                      gligen_inpaint_image=None, gligen_scheduled_sampling_beta: float = 0.3,
                      gligen_normalize_constant: float = 28.7,
                      num_inference_steps: Optional[int] = None, guidance_scale: float = 7.5,
                      height: Optional[int] = None, width: Optional[int] = None, num_images_per_prompt: int = 1,
                      latents=None, output_type: str = "pil", seed: Optional[int] = None, sampler=None, noise=None,
                      callback: Optional[Callable] = None, mode: Optional[str] = None, vae_dtype="float32",
                      **conditioning):
    """Images from text with, in each of `gligen_boxes` ([xmin, ymin, xmax, ymax] fractions of the image), the
    phrase gligen_phrases[k] and / or the reference image gligen_images[k] (PIL / numpy image or a path; None for
    a box without one); input_phrases_mask / input_images_mask (a number or a list, 0 drops a box's feature) as in
    diffusers' StableDiffusionGLIGENTextImagePipeline; with gligen_inpaint_image (PIL / numpy image or path) and an
    inpainting UNet the boxes of that image are regenerated (recipes/gligen_inpaint.py).
    gligen_scheduled_sampling_beta is checked but, as in diffusers, changes nothing. Other arguments as in
    text_to_image."""
    phrases, images, boxes = check_objects(gligen_phrases, gligen_images, gligen_boxes)
    check_beta(gligen_scheduled_sampling_beta)
    constant = float(gligen_normalize_constant)
    if not np.isfinite(constant):
        raise ValueError(f"gligen_normalize_constant must be a finite number, got {gligen_normalize_constant!r}")
    masks = (object_mask(input_phrases_mask, "input_phrases_mask"), object_mask(input_images_mask, "input_images_mask"))
    check_unet(components, "gated-text-image")
    if any(image is not None for image in images):
        _image_parts(components)
    if len(boxes) > MAX_OBJS:
        warnings.warn(f"More that {MAX_OBJS} objects found. Only first {MAX_OBJS} objects will be processed.",
                      FutureWarning)
        phrases, images, boxes = phrases[:MAX_OBJS], images[:MAX_OBJS], boxes[:MAX_OBJS]

    def grounding(rows: int, guided: bool) -> Grounding:
        return Grounding(text_image_inputs(components, phrases, images, boxes, masks, constant, rows, guided), 1.0)

    return grounded_images(components, grounding, prompt, negative_prompt, num_inference_steps=num_inference_steps,
                           guidance_scale=guidance_scale, height=height, width=width,
                           num_images_per_prompt=num_images_per_prompt, latents=latents, output_type=output_type,
                           seed=seed, sampler=sampler, noise=noise, callback=callback, mode=mode,
                           vae_dtype=vae_dtype, conditioning=conditioning, inpaint_image=gligen_inpaint_image,
                           boxes=boxes)


def _none_dash(values):
    return None if values is None else [None if v == "-" else v for v in values]


def _cli(args, components, kwargs: dict) -> tuple:
    if isinstance(kwargs.get("gligen_boxes"), str):
        kwargs = dict(kwargs, gligen_boxes=parse_boxes(kwargs["gligen_boxes"]))
    kwargs = dict(kwargs, gligen_phrases=_none_dash(kwargs.get("gligen_phrases")),
                  gligen_images=_none_dash(kwargs.get("gligen_images")))
    return gligen_text_image, kwargs


_IMAGE_OPTIONS = (
    ("--gligen-images", dict(nargs="+", default=None, help="GLIGEN text-image: one reference image file per box "
                                                           "('-' for a box with a phrase only)")),
)

FAMILIES = (
    Family("gligen_text_image", gligen_text_image, ("StableDiffusionGLIGENTextImagePipeline",),
           {"prompt": "prompt", "negative_prompt": "negative_prompt", "guidance": "guidance_scale",
            "sampler": "sampler", "size": "size", "gligen_phrases": "gligen_phrases", "gligen_images": "gligen_images",
            "gligen_boxes": "gligen_boxes", "gligen_inpaint_image": "gligen_inpaint_image"},
           ("gligen_boxes",), steps=30, prepare=_cli, cli_options=_CLI_OPTIONS + _IMAGE_OPTIONS,
           help="grounded text-to-image: --gligen-phrases and / or --gligen-images ('-' for none) placed in "
                "--gligen-boxes (one box per entry)"),
)
