"""I2VGen-XL (Zhang et al. 2023): I2VGenXLPipeline as a recipe.

The I2VGenXLUNet sees the text context, the CLIP image embedding of a square center crop, the VAE latents of the
image (a posterior sample) with a frame-position ramp for the frames after the first, and the target fps; CFG pairs
the text with the negative prompt and the image embedding with zeros (the image latents and fps are the same in
both halves). DDIM on THE loop; the 2-D VAE decodes decode_chunk_size frames at a time (the attention's precision:
msdiff.nets.i2vgen_xl).
"""
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from mindspore import Tensor
from mindspore import ops as mops

from ..conditioning import CFG, NetInputs, cfg_batch, compose, make_schedule
from ..nets.autoencoder_kl import sample_latent
from ..samplers import FiniteTracker, noise_source, resolve_sampler, sample
from .animatediff import _text
from .clip_image import CLIPImageConfig, clip_image_config, encode_image, normalize
from .family import Family, diffusers_names
from .frames import FRAMES_OPTION, as_pil, check_chunk, check_frames, decode_frames, finish_video
from .images import preprocess_image
from .latents import check_size, initial_noise, vae_in, vae_scale_factor
from .sd import default_steps, text_conditioning


def center_crop_wide(image, width: int, height: int):
    """diffusers' I2VGenXL _center_crop_wide: shrink (Pillow BOX) until one side fits width x height, then a center
    crop."""
    import PIL.Image

    image = as_pil(image)
    scale = min(image.size[0] / width, image.size[1] / height)
    image = image.resize((round(image.width // scale), round(image.height // scale)), resample=PIL.Image.BOX)
    x1, y1 = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((x1, y1, x1 + width, y1 + height))


def _image_embeddings(components, image, width: int, num_videos_per_prompt: int) -> Tensor:
    import PIL.Image

    encoder = components.extra.get("image_encoder")
    if encoder is None:
        raise ValueError("i2vgen_xl: the pipeline has no image_encoder (a CLIPVisionModelWithProjection)")
    fe = components.extra.get("feature_extractor")
    config = clip_image_config(fe) if isinstance(fe, dict) else CLIPImageConfig()
    crop_h, crop_w = config.crop_size
    square = center_crop_wide(image, width, width).resize((crop_w, crop_h), PIL.Image.BILINEAR)
    x = np.asarray(square).astype(np.float32) / np.float32(255)
    pixels = normalize(x, config.image_mean, config.image_std).transpose(2, 0, 1)[None]
    return encode_image(encoder, Tensor(np.ascontiguousarray(pixels)), config, num_videos_per_prompt)


def image_latents(components, image, width: int, height: int, num_frames: int, noise, vae_dtype="float32"):
    """[b, 4, f, h, w]: the VAE posterior sample of the center-cropped image (scaled) as frame 0, then ramps
    (i + 1) / (f - 1) for the later frames (diffusers' prepare_image_latents)."""
    vae = vae_in(components, vae_dtype)
    mean, logvar = vae.encode(preprocess_image(center_crop_wide(image, width, height), height, width))
    z = sample_latent(mean.astype(ms.float32), logvar.astype(ms.float32), noise.draw(mean.shape))
    z = (z * np.float32(vae.config.scaling_factor)).expand_dims(2)
    ramps = [mops.ones_like(z) * np.float32((i + 1) / (num_frames - 1)) for i in range(num_frames - 1)]
    return mops.concat([z] + ramps, axis=2) if ramps else z


def _prompts(components, prompt, negative_prompt, text, guided: bool, num_videos_per_prompt: int, tracker):
    """diffusers' I2VGenXL encode_prompt: clip_skip applies to the negative prompt too (unlike SD's)."""
    import dataclasses

    pos = text_conditioning(components, prompt, None, text, guidance=False,
                            num_images_per_prompt=num_videos_per_prompt, tracker=tracker)
    if not guided:
        return pos
    if text.negative_prompt_embeds is not None:
        neg = text.negative_prompt_embeds
    else:
        n = len(prompt) if isinstance(prompt, (list, tuple)) else 1
        negative = [""] * n if negative_prompt is None else negative_prompt
        neg = text_conditioning(components, negative, None, dataclasses.replace(text, prompt_embeds=None),
                                guidance=False, num_images_per_prompt=num_videos_per_prompt).prompt_embeds
    if neg.shape != pos.prompt_embeds.shape:
        raise ValueError(f"i2vgen_xl: negative prompt embeddings {tuple(neg.shape)} do not match the prompt's "
                         f"{tuple(pos.prompt_embeds.shape)}")
    return pos._replace(negative_prompt_embeds=neg)


@diffusers_names
def i2vgen_xl(components, prompt=None, image=None, negative_prompt=None, *, height: int = 704, width: int = 1280,
              target_fps: int = 16, num_frames: int = 16, num_inference_steps: Optional[int] = None,
              guidance_scale: float = 9.0, num_videos_per_prompt: int = 1, decode_chunk_size: int = 1,
              latents=None, clip_skip: Optional[int] = 1, output_type: str = "pil", seed: Optional[int] = None,
              sampler=None, noise=None, callback: Optional[Callable] = None, mode: Optional[str] = None,
              vae_dtype="float32", **text):
    """A video from an image and text (diffusers' I2VGenXLPipeline): frames as a list (per video) of PIL images, an
    array [b, f, h, w, 3] in [0, 1] ("np") or latents [b, 4, f, h/8, w/8] ("latent"). Draws: the image's
    posterior sample, then the initial latents. clip_skip defaults to 1, as diffusers' __call__."""
    if image is None:
        raise ValueError("i2vgen_xl: image is required (the picture to animate)")
    image = as_pil(image)
    check_size(components, height, width)
    num_frames, chunk = check_frames(num_frames), check_chunk(decode_chunk_size)
    steps = default_steps(components, num_inference_steps)
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    guided = float(guidance_scale) > 1.0
    text = _text("i2vgen_xl", dict(text, clip_skip=clip_skip))
    emb = _prompts(components, prompt, negative_prompt, text, guided, num_videos_per_prompt, tracker)
    b = emb.prompt_embeds.shape[0]
    image_emb = _image_embeddings(components, image, width, num_videos_per_prompt)
    image_emb = image_emb.reshape(image_emb.shape[0], -1)
    if image_emb.shape[0] != b:
        raise ValueError(f"i2vgen_xl: one image per prompt: {b} prompts x videos but {image_emb.shape[0]} images")
    tracker.add("image embeddings", image_emb)
    lat = mops.tile(image_latents(components, image, width, height, num_frames, noise_src, vae_dtype),
                    (num_videos_per_prompt, 1, 1, 1, 1))
    fps = Tensor(np.full((b * (2 if guided else 1),), target_fps, np.float32))
    smp = resolve_sampler(components.scheduler, sampler)
    schedule = make_schedule(smp, steps)
    f = vae_scale_factor(components)
    x = initial_noise((b, components.unet.config.in_channels, num_frames, height // f, width // f), noise_src,
                      latents)
    x = x * np.float32(schedule.init_noise_sigma) if schedule.init_noise_sigma != 1.0 else x
    tracker.add("initial latents", x)
    inputs = NetInputs(fps=fps, image_latents=mops.concat([lat, lat], axis=0) if guided else lat,
                       image_embeddings=cfg_batch(mops.zeros_like(image_emb) if guided else None, image_emb),
                       encoder_hidden_states=cfg_batch(emb.negative_prompt_embeds, emb.prompt_embeds))
    model = compose(components.unet, inputs, guidance=CFG(guidance_scale) if guided else None)
    x = sample(model, x, schedule, smp, noise_src, callback, mode=mode, tracker=tracker)
    return finish_video(x, output_type, lambda z: decode_frames(components, z, chunk, vae_dtype), tracker)


FAMILIES = (
    Family("i2vgen_xl", i2vgen_xl, ("I2VGenXLPipeline",),
           {"prompt": "prompt", "negative_prompt": "negative_prompt", "image": "image", "guidance": "guidance_scale",
            "size": "size", "frames": "num_frames", "sampler": "sampler"}, ("prompt", "image"), steps=50,
           cli_options=(FRAMES_OPTION,),
           help="image + text to video (I2VGen-XL): --image, --frames; writes an animated GIF"),
)
