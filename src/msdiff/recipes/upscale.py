"""upscale: StableDiffusionUpscalePipeline (stabilityai/stable-diffusion-x4-upscaler) as a recipe.

The low-resolution image, noised to `noise_level` by the pipeline's DDPM `low_res_scheduler`, is appended to the
latents as extra input channels (`ExtraChannels`); the UNet reads the noise level through its class embedding
(`num_class_embeds`, as `class_labels`). The latents have the low-resolution image's size and the VAE (scale factor
4, scaling_factor 0.08333) decodes them to 4x the pixels.
"""
from typing import Callable, Optional

import numpy as np
from jaxtyping import Float
from mindspore import Tensor

from ..conditioning import CFG, ExtraChannels, NetInputs, cfg_batch, compose, make_schedule
from ..samplers import FiniteTracker, noise_source, resolve_sampler, sample
from ..samplers.schedules import alphas_cumprod
from .family import Family, diffusers_names
from .images import default_size, image_size, preprocess_image
from .latents import finish, initial_noise, vae_scale_factor
from .sd import guidance_of, split_conditioning, text_conditioning

X4_SCALING_FACTOR = 0.08333  # diffusers' StableDiffusionUpscalePipeline requires (and otherwise forces) it


def _low_res_alphas(config: Optional[dict]) -> np.ndarray:
    """Float32 alphas_cumprod of the pipeline's DDPM low_res_scheduler config (diffusers' DDPMScheduler init)."""
    if not isinstance(config, dict):
        raise ValueError("upscale: the pipeline has no low_res_scheduler (a DDPMScheduler config)")
    if config.get("_class_name", "DDPMScheduler") != "DDPMScheduler":
        raise ValueError(f"upscale: low_res_scheduler must be a DDPMScheduler, got {config.get('_class_name')!r}")
    return alphas_cumprod(config.get("beta_schedule", "linear"), config.get("num_train_timesteps", 1000),
                          config.get("beta_start", 0.0001), config.get("beta_end", 0.02),
                          config.get("trained_betas"), config.get("rescale_betas_zero_snr", False))


def noise_low_res(components, image: Float[Tensor, "b 3 h w"], noise_level: int, eps: Float[Tensor, "b 3 h w"]
                  ) -> Float[Tensor, "b 3 h w"]:
    """The low-res image noised to `noise_level` by the low_res_scheduler (DDPM add_noise, Ho et al. 2020 eq. 4)."""
    acp = _low_res_alphas(components.extra.get("low_res_scheduler"))
    a = np.float32(acp[noise_level])
    return Tensor(np.sqrt(a)) * image + Tensor(np.sqrt(np.float32(1.0) - a)) * eps


def check_noise_level(components, noise_level) -> int:
    """noise_level as an int in [0, max_noise_level] (the pipeline's option, diffusers' default 350)."""
    top = int(components.options.get("max_noise_level", 350))
    if isinstance(noise_level, bool) or not isinstance(noise_level, (int, np.integer)) or \
            not 0 <= noise_level <= top:
        raise ValueError(f"upscale: noise_level must be an integer in [0, {top}] (the pipeline's max_noise_level), "
                         f"got {noise_level!r}")
    return int(noise_level)


def low_res_image(components, image) -> Float[Tensor, "b 3 h w"]:
    """The input image in [-1, 1] at its size rounded down to the VAE factor (bicubic resize, as the pipeline's
    VaeImageProcessor(resample="bicubic"))."""
    import PIL.Image

    f = vae_scale_factor(components)
    height, width = default_size(image, None, None, f)
    if height <= 0 or width <= 0:
        raise ValueError(f"upscale: the image ({image_size(image)}) is smaller than the VAE factor {f}")
    items = image if isinstance(image, (list, tuple)) else [image]
    if all(isinstance(im, PIL.Image.Image) for im in items):
        items = [im.convert("RGB").resize((width, height), resample=PIL.Image.BICUBIC)
                 if im.size != (width, height) else im for im in items]
        image = items if isinstance(image, (list, tuple)) else items[0]
    return preprocess_image(image, height, width)


@diffusers_names
def upscale(components, prompt=None, image=None, negative_prompt=None, *, num_inference_steps: int = 75,
            guidance_scale: float = 9.0, noise_level: int = 20, num_images_per_prompt: int = 1, latents=None,
            output_type: str = "pil", seed: Optional[int] = None, sampler=None, noise=None,
            callback: Optional[Callable] = None, mode: Optional[str] = None, vae_dtype="float32", **conditioning):
    """4x the pixels of `image`, guided by text (diffusers' StableDiffusionUpscalePipeline): noise_level (0 ..
    max_noise_level) is how much noise the low-res image gets before the UNet sees it. Random draws in diffusers'
    order: the low-res image noise, then the latents (shaped like the low-res image)."""
    if image is None:
        raise ValueError("upscale needs image= (the low-resolution picture)")
    text, micro = split_conditioning("upscale", conditioning)
    if micro != type(micro)():
        raise TypeError("upscale() takes no SD-XL micro-conditioning keywords")
    level = check_noise_level(components, noise_level)
    scaling = components.vae.config.scaling_factor
    if scaling != X4_SCALING_FACTOR:
        raise ValueError(f"upscale: vae/config.json has scaling_factor {scaling}; the x4 upscaler's is "
                         f"{X4_SCALING_FACTOR} (diffusers overrides other values with it): fix the config")
    g = guidance_of(components, guidance_scale)
    guided = g > 1.0
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    emb = text_conditioning(components, prompt, negative_prompt, text, guidance=guided,
                            num_images_per_prompt=num_images_per_prompt, tracker=tracker)
    low = low_res_image(components, image)
    low = noise_low_res(components, low, level, noise_src.draw(tuple(low.shape)))
    batch = emb.prompt_embeds.shape[0]
    channels = components.unet.config.in_channels
    if channels != components.vae.config.latent_channels + low.shape[1]:
        raise ValueError(f"upscale needs a UNet with latent + image channels "
                         f"({components.vae.config.latent_channels + low.shape[1]}), this one has {channels}")
    smp = resolve_sampler(components.scheduler, sampler)
    schedule = make_schedule(smp, num_inference_steps)
    shape = (batch, components.vae.config.latent_channels) + tuple(low.shape[2:])
    x = initial_noise(shape, noise_src, latents)
    x = x * np.float32(schedule.init_noise_sigma) if schedule.init_noise_sigma != 1.0 else x
    tracker.add("initial latents", x)
    copies = 2 if guided else 1
    labels = Tensor(np.full((batch * copies,), level, np.int64))  # the noise level, one per UNet row
    model = compose(components.unet,
                    NetInputs(encoder_hidden_states=cfg_batch(emb.negative_prompt_embeds, emb.prompt_embeds),
                              class_labels=labels),
                    ExtraChannels(low), guidance=CFG(g) if guided else None)
    x = sample(model, x, schedule, smp, noise_src, callback, mode=mode, tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)


FAMILIES = (
    Family("upscale", upscale, ("StableDiffusionUpscalePipeline",),
           {"prompt": "prompt", "negative_prompt": "negative_prompt", "guidance": "guidance_scale",
            "sampler": "sampler", "image": "image", "noise_level": "noise_level"}, ("image",), steps=75,
           cli_options=(("--noise-level", dict(type=int, default=None, help="x4 upscaler: noise added to --image "
                                                                            "(0 .. max_noise_level, default 20)")),),
           help="4x upscaling of --image (required), guided by --prompt; --noise-level"),
)
