"""image_variation: StableDiffusionImageVariationPipeline (lambdalabs/sd-image-variations-diffusers) as a recipe.

The UNet is conditioned on the CLIP image embedding of the input (one token, [b, 1, projection_dim]) instead of
text; classifier-free guidance pairs it with zeros, as diffusers does.
"""
from typing import Callable, Optional

import mindspore as ms
from mindspore import ops as mops

from ..conditioning import CFG, NetInputs, cfg_batch, compose, make_schedule
from ..samplers import FiniteTracker, noise_source, resolve_sampler, sample
from .clip_image import CLIPImageConfig, clip_image_config, encode_image
from .family import Family, diffusers_names
from .latents import finish, prepare_latents
from .sd import default_hw, default_steps


def _image_encoder(components):
    encoder = components.extra.get("image_encoder")
    if encoder is None:
        raise ValueError("image_variation: the pipeline has no image_encoder (a CLIPVisionModelWithProjection)")
    fe = components.extra.get("feature_extractor")
    return encoder, clip_image_config(fe) if isinstance(fe, dict) else CLIPImageConfig()


@diffusers_names
def image_variation(components, image=None, *, height: Optional[int] = None, width: Optional[int] = None,
                    num_inference_steps: Optional[int] = None, guidance_scale: float = 7.5,
                    num_images_per_prompt: int = 1, latents=None, output_type: str = "pil",
                    seed: Optional[int] = None, sampler=None, noise=None, callback: Optional[Callable] = None,
                    mode: Optional[str] = None, vae_dtype="float32"):
    """Variations of `image` (PIL / numpy image(s), or CLIP pixel_values) (diffusers' StableDiffusionImageVariation
    Pipeline); returns PIL images, an array (b, h, w, 3) in [0, 1] ("np") or latents ("latent")."""
    if image is None:
        raise ValueError("image_variation: image is required (the picture to vary)")
    steps = default_steps(components, num_inference_steps)
    height, width = default_hw(components, height, width)
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    encoder, config = _image_encoder(components)
    emb = encode_image(encoder, image, config, num_images_per_prompt)
    tracker.add("image embeddings", emb)
    guided = float(guidance_scale) > 1.0
    hidden = cfg_batch(mops.zeros_like(emb), emb) if guided else emb
    smp = resolve_sampler(components.scheduler, sampler)
    schedule = make_schedule(smp, steps)
    x = prepare_latents(components, emb.shape[0], height, width, noise_src, latents, schedule.init_noise_sigma)
    tracker.add("initial latents", x)
    model = compose(components.unet, NetInputs(encoder_hidden_states=hidden),
                    guidance=CFG(guidance_scale) if guided else None)
    x = sample(model, x.astype(ms.float32), schedule, smp, noise_src, callback, mode=mode, tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)


FAMILIES = (
    Family("image_variation", image_variation, ("StableDiffusionImageVariationPipeline",),
           {"image": "image", "guidance": "guidance_scale", "sampler": "sampler", "size": "size"}, ("image",),
           steps=30, help="variations of --image (CLIP image embedding instead of a prompt)"),
)
