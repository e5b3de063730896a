"""msdiff.recipes: plain functions that turn `msdiff.load_pipeline` components into images.

Recipes (diffusers' argument names): `text_to_image`, `image_to_image`, `inpaint`, `instruct_pix2pix`
for SD 1.x/2.x, SD-XL and latent consistency models (`lcm_text_to_image`, `lcm_image_to_image`).
Each is a short composition of public steps a researcher can call one by one:

    emb = steps.encode_prompt(c, "a cat", "blurry")              # prompt -> embeddings
    smp = denoise.resolve_sampler(c)                               # scheduler config -> Sampler
    sch = smp.schedule(30)
    noise = steps.NoiseSource(seed=0)
    x = steps.prepare_latents(c, 1, 512, 512, noise, init_noise_sigma=sch.init_noise_sigma)
    den = conditioning.make_denoiser(c, emb, guidance_scale=7.5, height=512, width=512)
    x = denoise.denoise(den, smp, sch, x, noise, mode="graph")   # loop: guided UNet -> sampler step
    images = steps.postprocess(steps.decode(c, x), "pil")          # VAE decode (fp32) -> PIL
"""
import importlib

from . import conditioning, denoise, steps
from .conditioning import make_denoiser
from .denoise import Denoiser, denoise_steps, make_schedule, resolve_sampler
from .inpaint import inpaint
from .instruct_pix2pix import instruct_pix2pix
from .lcm import lcm_image_to_image, lcm_text_to_image
from .steps import (NoiseSource, NonFiniteError, PromptEmbeds, decode, encode_image, encode_prompt, encode_prompt_xl,
                    postprocess, prepare_latents, preprocess_image, preprocess_mask)
from .text_to_image import image_to_image, text_to_image

# other recipe modules, imported on first use when present
_LAZY = ("train", "unconditional", "ldm", "consistency", "dit", "controlnet", "pixart", "t2i_adapter")


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["text_to_image", "image_to_image", "inpaint", "instruct_pix2pix", "lcm_text_to_image",
           "lcm_image_to_image", "encode_prompt", "encode_prompt_xl", "prepare_latents",
           "encode_image", "decode", "postprocess", "preprocess_image", "preprocess_mask", "NoiseSource",
           "NonFiniteError", "PromptEmbeds", "Denoiser", "denoise_steps", "make_schedule", "resolve_sampler",
           "make_denoiser", "steps", "denoise", "conditioning"]
