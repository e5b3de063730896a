"""DDPM / DDIM sampling of a pixel-space UNet2DModel (diffusers' DDPMPipeline / DDIMPipeline), class labels optional.

`unconditional_steps` yields (step index, sample) after every net call; `unconditional` runs it to
images; `digit_grid` draws the shipped digit model's 10-row grid (the default `msdiff generate`).
Class-conditional models trained with a "null" label (`train_unconditional(label_dropout > 0)`)
accept classifier-free guidance: guidance_scale > 1 with `null_class_label`.
"""
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Tuple

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..conditioning import CFG, NetInputs, compose
from ..samplers import FiniteTracker, noise_source, resolve_sampler, sample_steps
from ..samplers.loop import run_steps
from ..settings import resolve_mode
from .family import Family, diffusers_names
from .latents import check_memory

DIGITS = Path(__file__).resolve().parents[1] / "assets" / "digits"
_DEFAULT_SCHEDULER = {"_class_name": "DDPMScheduler"}
DIGITS_GUIDANCE_SCALE = 3.0  # classifier-free guidance of digit_grid; see assets/digits/MODEL_CARD.md


def _unet_and_scheduler(components_or_unet) -> tuple:
    unet = getattr(components_or_unet, "unet", components_or_unet)
    if unet is None:
        raise ValueError("the components have no unet")
    scheduler = getattr(components_or_unet, "scheduler", None) or _DEFAULT_SCHEDULER
    return unet, scheduler


def unconditional_steps(components_or_unet, *, batch_size: int = 1, num_inference_steps: int = 1000,
                        class_labels: Optional[Sequence[int]] = None, guidance_scale: float = 1.0,
                        null_class_label: Optional[int] = None, seed: Optional[int] = None,
                        latents: Optional[Float[Tensor, "b c h w"]] = None, sampler=None, eta: float = 0.0,
                        noise=None, mode: Optional[str] = None, tracker: Optional[FiniteTracker] = None
                        ) -> Iterator[Tuple[int, Float[Tensor, "b c h w"]]]:
    """Sample from noise with the UNet and sampler, yielding (step index, sample) after every net call.

    All noise (initial latents unless given, then DDPM / DDIM-eta step noise) is drawn in that order from
    `noise` (recorded arrays or a callable(shape), as `steps.NoiseSource`) or else numpy seeded by `seed`.
    """
    unet, scheduler = _unet_and_scheduler(components_or_unet)
    mode = resolve_mode(mode)
    smp = resolve_sampler(scheduler, sampler, eta=eta)
    schedule = smp.schedule(num_inference_steps)
    cfg = unet.config
    noise = noise_source(seed, noise)
    if latents is None:
        size = cfg.sample_size if isinstance(cfg.sample_size, (tuple, list)) else (cfg.sample_size,) * 2
        if size[0] is None:
            raise ValueError("the unet config has no sample_size: pass latents")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        check_memory((batch_size, cfg.in_channels) + tuple(size), "the samples")
        x = noise.draw((batch_size, cfg.in_channels) + tuple(size)) * float(schedule.init_noise_sigma)
    else:
        x = (latents if isinstance(latents, Tensor) else Tensor(np.asarray(latents, np.float32))).astype(ms.float32)
        batch_size = x.shape[0]
    y = None
    if cfg.class_embed_type is not None:
        raise ValueError(f"this recipe passes integer class labels; a UNet with class_embed_type="
                         f"{cfg.class_embed_type!r} takes float class inputs: call the net directly")
    if cfg.num_class_embeds:
        if class_labels is None:
            raise ValueError("this model is class-conditional: pass class_labels (one per image, or one for all)")
        labels = np.broadcast_to(np.asarray(class_labels, dtype=np.int32).reshape(-1), (batch_size,))
        if labels.min() < 0 or labels.max() >= cfg.num_class_embeds:
            raise ValueError(f"class_labels must lie in [0, {cfg.num_class_embeds}); got {labels.tolist()}")
        y = Tensor(np.ascontiguousarray(labels))
    elif class_labels is not None:
        raise ValueError("class_labels given but the model is not class-conditional (num_class_embeds is None)")
    if guidance_scale != 1.0:
        if y is None or null_class_label is None:
            raise ValueError("guidance_scale != 1 needs a class-conditional model and null_class_label")
        y_null = Tensor(np.full((batch_size,), null_class_label, np.int32))
        model = compose(unet, NetInputs(class_labels=mops.concat([y_null, y], axis=0)), guidance=CFG(guidance_scale))
    else:
        model = compose(unet, NetInputs(class_labels=y))
    yield from sample_steps(model, x, schedule, smp, noise, mode=mode, tracker=tracker)


def to_images(sample: Float[Tensor, "b c h w"], output_type: str = "pil"):
    """Samples in [-1, 1] -> np.ndarray (b, h, w, c) in [0, 1] ("np") or PIL images ("pil", 1 channel -> "L")."""
    x = np.clip(sample.asnumpy().astype(np.float32) / 2 + 0.5, 0.0, 1.0).transpose(0, 2, 3, 1)
    if output_type == "np":
        return x
    if output_type != "pil":
        raise ValueError(f"output_type must be 'pil' or 'np', got {output_type!r}")
    from PIL import Image

    u8 = (x * 255).round().astype(np.uint8)
    return [Image.fromarray(v[..., 0] if v.shape[-1] == 1 else v) for v in u8]


@diffusers_names
def unconditional(components_or_unet, *, batch_size: int = 1, num_inference_steps: int = 1000,
                  class_labels: Optional[Sequence[int]] = None, guidance_scale: float = 1.0,
                  null_class_label: Optional[int] = None, seed: Optional[int] = None,
                  latents: Optional[Float[Tensor, "b c h w"]] = None, sampler=None, eta: float = 0.0,
                  noise=None, output_type: str = "pil", mode: Optional[str] = None,
                  callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None,
                  progress: Optional[bool] = None):
    """Images from a UNet2DModel pipeline (diffusers' DDPMPipeline; sampler="ddim" with eta: DDIMPipeline).

    callback(step, sample) runs after every net call; returning True stops early. progress: None follows
    msdiff.settings (a bar in a terminal / notebook), True / False force it.
    """
    tracker = FiniteTracker()
    steps = unconditional_steps(components_or_unet, batch_size=batch_size, num_inference_steps=num_inference_steps,
                                class_labels=class_labels, guidance_scale=guidance_scale,
                                null_class_label=null_class_label, seed=seed, latents=latents, sampler=sampler,
                                eta=eta, noise=noise, mode=mode, tracker=tracker)
    x = run_steps(steps, num_inference_steps, callback, tracker, latents, progress=progress, desc="sampling")
    return to_images(x, output_type)


def load_digits_model(dtype="float32"):
    """The shipped class-conditional digit model (msdiff/assets/digits) as pipeline components."""
    from ..io import load_pipeline

    return load_pipeline(DIGITS, dtype=dtype)


@diffusers_names
def digit_grid(components=None, *, per_class: int = 8, num_inference_steps: int = 20, seed: Optional[int] = 0,
               sampler="ddim", guidance_scale: Optional[float] = None, scale: int = 2,
               progress: Optional[bool] = None, mode: Optional[str] = None):
    """A PIL grid of generated digits, one row per class 0-9 with `per_class` samples each (shipped model by default).

    guidance_scale None uses DIGITS_GUIDANCE_SCALE (the value the model card's evaluation used).
    """
    from PIL import Image

    components = components or load_digits_model()
    if guidance_scale is None:
        guidance_scale = DIGITS_GUIDANCE_SCALE
    num_classes = 10
    size = components.unet.config.sample_size
    check_memory((num_classes * per_class, components.unet.config.in_channels, size, size), "the digit grid")
    null = components.unet.config.num_class_embeds - 1 if guidance_scale != 1.0 else None
    labels = np.repeat(np.arange(num_classes), per_class)
    images = unconditional(components, batch_size=labels.size, num_inference_steps=num_inference_steps,
                           class_labels=labels, guidance_scale=guidance_scale, null_class_label=null, seed=seed,
                           sampler=sampler, output_type="np", mode=mode, progress=progress)
    h, w = images.shape[1:3]
    pad = 2
    grid = np.full((num_classes * (h + pad) + pad, per_class * (w + pad) + pad), 0.25, np.float32)
    for k, img in enumerate(images):
        r, c = divmod(k, per_class)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = img[..., 0]
    pil = Image.fromarray((grid * 255).round().astype(np.uint8), mode="L")
    return pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST) if scale > 1 else pil


def _unconditional_cli(args, components, kwargs: dict) -> tuple:
    """DDIMPipeline always samples with DDIM (diffusers); class-conditional models need --class-label."""
    n = components.unet.config.num_class_embeds
    if n and "class_labels" not in kwargs:
        raise ValueError(f"this model is class-conditional: pass --class-label in [0, {n})")
    if "class_labels" in kwargs:
        if not n:
            raise ValueError("--class-label given but this model is not class-conditional (num_class_embeds is "
                             "null)")
        if not 0 <= kwargs["class_labels"] < n:
            raise ValueError(f"--class-label must lie in [0, {n}), got {kwargs['class_labels']}")
        kwargs["class_labels"] = [kwargs["class_labels"]]
    if components.pipeline_class == "DDIMPipeline":
        kwargs.setdefault("sampler", "ddim")
        kwargs.setdefault("num_inference_steps", 50)
    return unconditional, kwargs


def _digits_cli(args, components, kwargs: dict) -> tuple:
    """The bundled digit model's grid (no --model): one PIL image, its own progress bar."""
    def grid(_components, callback=None, **kw):
        return [digit_grid(load_digits_model(kw.pop("dtype", "float32")), progress=True, **kw)]

    kwargs.setdefault("per_class", 8)
    kwargs["sampler"] = "ddim"
    return grid, kwargs


FAMILIES = (
    Family("unconditional", unconditional, ("DDPMPipeline", "DDIMPipeline"),
           {"sampler": "sampler", "class_label": "class_labels"}, steps=1000, prepare=_unconditional_cli,
           help="unconditional (--class-label if class-conditional; steps 1000 / DDIM 50)"),
    Family("digits", digit_grid, (None,), {"per_class": "per_class"}, steps=20, sampler="ddim",
           prepare=_digits_cli, help="no --model: the bundled digit model's grid (--per-class, default 8)"),
)
