"""msdiff.recipes: plain functions that turn `msdiff.load_pipeline` components into images.

Every recipe is callable as `recipes.<name>(components, ...)` with diffusers' argument names: text_to_image,
image_to_image, inpaint, instruct_pix2pix, lcm_text_to_image, lcm_image_to_image, controlnet, controlnet_img2img,
controlnet_inpaint, t2i_adapter, unconditional, consistency, ldm_text_to_image, ldm_super_resolution, dit,
pixart (and digit_grid, train_unconditional). Each is a short composition of public steps a researcher can
call one by one:

    emb = steps.encode_prompt(c, "a cat", "blurry")              # prompt -> embeddings
    smp = samplers.resolve_sampler(c.scheduler)                    # scheduler config -> Sampler
    sch = smp.schedule(30)
    noise = steps.NoiseSource(seed=0)
    x = steps.prepare_latents(c, 1, 512, 512, noise, init_noise_sigma=sch.init_noise_sigma)
    model = conditioning.compose(c.unet, sd.sd_inputs(c, emb, sd.MicroConditioning(), guidance_scale=7.5,
                                 height=512, width=512, guidance=conditioning.CFG(7.5)),
                                 guidance=conditioning.CFG(7.5))
    x = samplers.sample(model, x, sch, smp, noise, mode="graph")   # the one loop
    images = steps.postprocess(steps.decode(c, x), "pil")          # VAE decode (fp32) -> PIL

Which recipe serves which diffusers pipeline class is declared beside each recipe (`family.Family`), read by
`family_of(class_name)`.
"""
from . import sd, steps
from .animatediff import animatediff, animatediff_components, animatediff_video_to_video
from .consistency import consistency
from .controlnet import controlnet, controlnet_img2img, controlnet_inpaint
from .dit import dit
from .kandinsky import kandinsky_v22
from .kandinsky_decoders import (kandinsky_v22_controlnet, kandinsky_v22_controlnet_img2img, kandinsky_v22_img2img,
                                 kandinsky_v22_inpaint)
from .kandinsky_prior import (kandinsky21_prior_interpolate, kandinsky_prior, kandinsky_prior_emb2emb,
                              kandinsky_prior_interpolate)
from .kandinsky21 import kandinsky21, kandinsky21_img2img, kandinsky21_inpaint
from .family import Family, families, family_of
from .inpaint import inpaint
from .instruct_pix2pix import instruct_pix2pix
from .lcm import lcm_image_to_image, lcm_text_to_image
from .ldm import ldm_super_resolution, ldm_text_to_image
from .pixart import pixart
from .depth2img import depth_to_image
from .deepfloyd_if import deepfloyd_if_img2img, deepfloyd_if_inpaint, deepfloyd_if_text_to_image
from .if_superres import deepfloyd_if_img2img_superres, deepfloyd_if_inpaint_superres, deepfloyd_if_superres
from .diffedit import diffedit, generate_mask, invert
from .image_variation import image_variation
from .latent_upscale import latent_upscale
from .gligen import gligen
from .gligen_text_image import gligen_text_image
from .i2vgen_xl import i2vgen_xl
from .sd_run import sd_denoise
from .steps import (NoiseSource, NonFiniteError, PromptEmbeds, decode, encode_image, encode_prompt, encode_prompt_xl,
                    postprocess, prepare_latents, preprocess_image, preprocess_mask)
from .t2i_adapter import t2i_adapter
from .svd import stable_video_diffusion
from .text_to_image import image_to_image, text_to_image
from .unclip import unclip_decoder, unclip_image_variation, unclip_prior, unclip_super_res, unclip_text_to_image
from .unconditional import digit_grid, unconditional
from .upscale import upscale


def train_unconditional(*args, **kwargs):
    """msdiff.recipes.train.train_unconditional (imported on first use: training pulls in optimizer code)."""
    from .train import train_unconditional as train
    return train(*args, **kwargs)


__all__ = ["text_to_image", "image_to_image", "inpaint", "instruct_pix2pix", "lcm_text_to_image",
           "lcm_image_to_image", "controlnet", "controlnet_img2img", "controlnet_inpaint", "t2i_adapter",
           "unconditional", "digit_grid", "consistency", "ldm_text_to_image", "ldm_super_resolution", "dit", "pixart",
           "train_unconditional", "Family", "families", "family_of", "sd", "sd_denoise", "steps", "NoiseSource",
           "NonFiniteError", "PromptEmbeds", "decode", "encode_image", "encode_prompt", "encode_prompt_xl",
           "postprocess", "prepare_latents", "preprocess_image", "preprocess_mask"]
