"""Public recipe steps, one import away: each is one arrow of a recipe's data flow and can be called alone.

    noise = steps.NoiseSource(seed=0)                               # seed -> noise          (msdiff.samplers)
    emb = steps.encode_prompt(c, "a cat", "blurry")                 # prompt -> embeddings   (recipes.prompts)
    x = steps.prepare_latents(c, 1, 512, 512, noise)                # noise -> latents       (recipes.latents)
    z = steps.encode_image(c, steps.preprocess_image(img, 512, 512), noise)   # image -> latents
    images = steps.postprocess(steps.decode(c, x), "pil")           # latents -> images      (recipes.images)
"""
from ..samplers import FiniteTracker, NoiseSource, NonFiniteError
from .images import (ImageInput, default_size, image_size, is_latent_image, postprocess, preprocess_image,
                     preprocess_mask)
from .latents import (check_size, decode, encode_image, finish, initial_noise, prepare_latents, vae_in,
                      vae_scale_factor)
from .prompts import PromptEmbeds, add_time_ids, encode_prompt, encode_prompt_xl, guidance_scale_embedding

__all__ = ["FiniteTracker", "NoiseSource", "NonFiniteError", "ImageInput", "default_size", "image_size",
           "is_latent_image", "postprocess", "preprocess_image", "preprocess_mask", "check_size", "decode",
           "encode_image", "finish", "initial_noise", "prepare_latents", "vae_in", "vae_scale_factor",
           "PromptEmbeds", "add_time_ids", "encode_prompt", "encode_prompt_xl", "guidance_scale_embedding"]
