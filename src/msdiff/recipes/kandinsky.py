"""Kandinsky 2.2 image decoding from CLIP image embeddings (diffusers' KandinskyV22Pipeline).

The UNet takes the image embeddings only (addition_embed_type / encoder_hid_dim_type "image": no text context);
classifier-free guidance batches [negative; positive] embeddings, guides the eps half of the output and drops the
variance half before a non-learned sampler step, as diffusers; MoVQ decodes the latents unquantized. The
embeddings come from a prior (msdiff.nets.prior_transformer) or any CLIP image encoder.
"""
import weakref
from pathlib import Path
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor, nn
from mindspore import ops as mops

from ..conditioning import CFG, NetInputs, TakeChannels, compose
from ..samplers import NonFiniteError, noise_source, resolve_sampler, sample
from .family import Family, diffusers_names
from .images import postprocess
from .latents import initial_noise, vae_in

_DEFAULT_SCHEDULER = {"_class_name": "DDPMScheduler"}


class ImageEmbedsUNet(nn.Cell):
    """unet(x, t, image_embeds) as Kandinsky 2.2 calls it: no context, the embeddings in added_cond_kwargs."""

    def __init__(self, unet):
        super().__init__(auto_prefix=False)
        self.unet = unet

    def construct(self, x, t, image_embeds):
        return self.unet(x, t, None, added_cond_kwargs={"image_embeds": image_embeds})


class HintUNet(ImageEmbedsUNet):
    """unet(x, t, image_embeds, hint) of the Kandinsky 2.2 ControlNet pipelines (addition_embed_type image_hint)."""

    def construct(self, x, t, image_embeds, hint):
        return self.unet(x, t, None, added_cond_kwargs={"image_embeds": image_embeds, "hint": hint})


_WRAPPED = weakref.WeakKeyDictionary()


def _wrapped(unet, hint: bool = False) -> ImageEmbedsUNet:
    per_unet = _WRAPPED.setdefault(unet, {})
    if hint not in per_unet:
        per_unet[hint] = (HintUNet if hint else ImageEmbedsUNet)(unet)
    return per_unet[hint]


def movq_of(components):
    """The pipeline's MoVQ (`extra["movq"]` of msdiff.load_pipeline, or a `movq` attribute)."""
    movq = getattr(components, "movq", None) or getattr(components, "extra", {}).get("movq")
    if movq is None:
        raise ValueError("the components have no 'movq' (a VQModel)")
    return movq


def movq_in(components):
    """The MoVQ to run: an fp32 copy of an fp16-loaded one (cached), as SD's VAE runs in fp32 by default."""
    from types import SimpleNamespace
    return vae_in(SimpleNamespace(vae=movq_of(components)), "float32")


def movq_latent_size(height: int, width: int, scale_factor: int) -> tuple:
    """Latent (h, w) for an image size: rounded up to a multiple of scale_factor**2, then / scale_factor
    (diffusers' downscale_height_and_width)."""
    return tuple(-(-v // scale_factor ** 2) * scale_factor for v in (height, width))


def _embeds(value, name: str) -> Tensor:
    if value is None:
        raise ValueError(f"kandinsky_v22: {name} is required")
    value = value if isinstance(value, Tensor) else Tensor(np.asarray(value, np.float32))
    if value.ndim != 2:
        raise ValueError(f"kandinsky_v22: {name} must be [batch, dim], got shape {value.shape}")
    return value.astype(ms.float32)


@diffusers_names
def kandinsky_v22(components, image_embeds, negative_image_embeds=None, *, height: int = 512, width: int = 512,
                  num_inference_steps: int = 100, guidance_scale: float = 4.0, num_images_per_prompt: int = 1,
                  seed: Optional[int] = None, noise=None, latents: Optional[Float[Tensor, "b c h w"]] = None,
                  sampler=None, callback: Optional[Callable[[int, Tensor], Optional[bool]]] = None,
                  mode: Optional[str] = None, output_type: str = "pil"):
    """Images from CLIP image embeddings with a Kandinsky 2.2 decoder (diffusers' KandinskyV22Pipeline).

    negative_image_embeds is needed with guidance_scale > 1 (the prior's zero-image embedding, usually).
    sampler: None (the pipeline's scheduler), a scheduler class name / config dict, or a Sampler.
    """
    movq = movq_of(components)
    embeds, guided = image_embeds_batch(image_embeds, negative_image_embeds, num_images_per_prompt, guidance_scale)
    ch = movq.config.latent_channels
    h, w = movq_latent_size(height, width, movq_scale_factor(movq))
    noise_src = noise_source(seed, noise)
    smp = resolve_sampler(getattr(components, "scheduler", None), sampler, default=_DEFAULT_SCHEDULER)
    schedule = smp.schedule(num_inference_steps)
    x = initial_noise((embeds.shape[0] // (2 if guided else 1), ch, h, w), noise_src, latents)
    x = x * np.float32(schedule.init_noise_sigma)
    x = denoise(components, embeds, x, schedule, smp, noise_src, guidance_scale=guidance_scale, callback=callback,
                mode=mode)
    return movq_finish(components, x, output_type)


def movq_scale_factor(movq) -> int:
    """2 ** (levels - 1) of a MoVQ (diffusers' movq_scale_factor)."""
    return 2 ** (len(movq.config.block_out_channels) - 1)


def image_embeds_batch(image_embeds, negative_image_embeds, num_images_per_prompt: int, guidance_scale: float,
                       what: str = "kandinsky_v22") -> tuple:
    """(embeddings each repeated num_images_per_prompt times, [negative; positive] under guidance, guided)."""
    positive = _embeds(image_embeds, "image_embeds")
    embeds = mops.repeat_interleave(positive, num_images_per_prompt, 0)
    guided = guidance_scale > 1.0
    if guided:
        negative = _embeds(negative_image_embeds, "negative_image_embeds (guidance_scale > 1)")
        if negative.shape != positive.shape:
            raise ValueError(f"{what}: negative_image_embeds {negative.shape} must match image_embeds "
                             f"{positive.shape}")
        embeds = mops.concat([mops.repeat_interleave(negative, num_images_per_prompt, 0), embeds], axis=0)
    return embeds, guided


def denoise(components, embeds: Tensor, x: Float[Tensor, "b c h w"], schedule, smp, noise_src, *,
            guidance_scale: float, hint: Optional[Tensor] = None, pieces: tuple = (),
            callback: Optional[Callable] = None, mode: Optional[str] = None) -> Float[Tensor, "b c h w"]:
    """THE loop over a Kandinsky 2.2 UNet: image embeddings (and a ControlNet hint, batched like them) as added
    conditions, extra pieces (inpainting channels / blend), the variance half dropped before guidance."""
    unet = components.unet
    guided = guidance_scale > 1.0
    dt = unet.compute_dtype
    ch = x.shape[1]
    inputs = NetInputs(image_embeds=embeds.astype(dt), hint=None if hint is None else hint.astype(dt))
    take = [TakeChannels(ch)] if unet.config.out_channels != ch else []
    model = compose(_wrapped(unet, hint is not None), inputs, *pieces, *take,
                    guidance=CFG(guidance_scale) if guided else None)
    return sample(model, x, schedule, smp, noise_src, callback, mode=mode)


def movq_finish(components, x: Tensor, output_type: str, what: str = "kandinsky_v22"):
    """Latents (output_type "latent"), or the MoVQ decode (unquantized) as images."""
    if output_type == "latent":
        return x
    movq = movq_in(components)
    image = movq.decode(x.astype(movq.compute_dtype), force_not_quantize=True).astype(ms.float32)
    if not bool(mops.isfinite(image).all()):
        raise NonFiniteError(f"{what}: the MoVQ decode (fp32) produced inf/nan")
    return postprocess(image, output_type)


def find_prior(model: str):
    """The prior pipeline beside a Kandinsky decoder: <model>/prior, or the name with "decoder" -> "prior"
    (kandinsky-community/kandinsky-2-2-decoder -> ...-prior, a folder or a repo id in the HF cache)."""
    from ..io import resolve_folder

    folder = resolve_folder(model)
    candidates = [folder / "prior"]
    name = str(model)
    if "decoder" in Path(name).name:
        candidates.append(Path(name).parent / Path(name).name.replace("decoder", "prior"))
    for c in candidates:
        if (c / "model_index.json").is_file():
            return c
    if "decoder" in name:  # a repo id: the last "decoder" -> "prior"
        i = name.rfind("decoder")
        try:
            return resolve_folder(name[:i] + "prior" + name[i + len("decoder"):])
        except (OSError, ValueError):
            pass
    raise ValueError(f"{model}: no Kandinsky prior found (looked for {', '.join(str(c) for c in candidates)}); "
                     f"give the prior pipeline folder with --prior")


def cli_prepare(recipe) -> Callable:
    """A Family prepare that runs the prior on --prompt / --negative-prompt (--prior, --prior-steps; prior guidance
    4, as diffusers' combined pipelines) and hands its embeddings to `recipe`; one noise source for both stages."""

    def prepare(args, components, kwargs: dict) -> tuple:
        import msdiff
        from .kandinsky_prior import kandinsky_prior
        prompt, negative = kwargs.pop("prompt", None), kwargs.pop("negative_prompt", None)
        path = kwargs.pop("prior", None) or find_prior(args.model)
        steps = kwargs.pop("prior_steps", None) or 25
        if prompt is None:
            raise ValueError(f"{components.pipeline_class} needs --prompt (the prior turns it into image embeddings)")
        prior = msdiff.load_pipeline(path, dtype="float16" if getattr(args, "dtype", "fp32") == "fp16" else "float32")
        noise = noise_source(kwargs.pop("seed", None))
        out = kandinsky_prior(prior, prompt, negative, num_inference_steps=steps, noise=noise,
                              mode=kwargs.get("mode"))
        kwargs.update(image_embeds=out.image_embeds, negative_image_embeds=out.negative_image_embeds, noise=noise)
        if "hint" in kwargs:
            import PIL.Image
            hint = np.asarray(PIL.Image.open(kwargs["hint"]).convert("RGB"), np.float32) / np.float32(255.0)
            kwargs["hint"] = hint.transpose(2, 0, 1)[None]
        return recipe, kwargs

    return prepare


PRIOR_OPTIONS = (("--prior", dict(default=None, metavar="PATH_OR_REPO", help="Kandinsky decoders: the prior "
                                  "pipeline that turns --prompt into image embeddings (default: the model's prior/ "
                                  "or its decoder -> prior sibling)")),
                 ("--prior-steps", dict(type=int, default=None, help="Kandinsky prior steps (default 25)")))
# CLI option dest -> recipe keyword shared by the Kandinsky 2.2 decoders (prompt / prior options go to the prior)
DECODER_OPTIONS = {"prompt": "prompt", "negative_prompt": "negative_prompt", "prior": "prior",
                   "prior_steps": "prior_steps", "size": "size", "guidance": "guidance_scale", "sampler": "sampler"}

FAMILIES = (Family("kandinsky_v22", kandinsky_v22, ("KandinskyV22Pipeline",), DECODER_OPTIONS, ("prompt",),
                   steps=100, prepare=cli_prepare(kandinsky_v22), cli_options=PRIOR_OPTIONS,
                   help="image embeddings from a Kandinsky prior (--prior, or the folder's prior/ or -prior "
                        "sibling) of --prompt, then decoded"),)
