"""Stable Video Diffusion (Blattmann et al. 2023): StableVideoDiffusionPipeline as a recipe.

The image conditions the UNetSpatioTemporalConditionModel three ways: its CLIP image embedding is the one context
token, its VAE latents (the image noised by noise_aug_strength) are concatenated to every frame's input channels,
and fps - 1 / motion_bucket_id / noise_aug_strength are the added time ids. Guidance is CFG with a per-frame scale
(linspace(min_guidance_scale, max_guidance_scale, num_frames), a Tensor of conditioning.CFG), the sampler the
checkpoint's EDM-style Euler (v-prediction, continuous timesteps 0.25 log sigma, Karras sigmas), and the temporal
decoder decodes decode_chunk_size frames at a time (each chunk a video of that many frames, as diffusers).
"""
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..conditioning import CFG, ExtraChannels, NetInputs, cfg_batch, compose, make_schedule
from ..samplers import FiniteTracker, noise_source, resolve_sampler, sample
from .clip_image import CLIPImageConfig, clip_image_config, encode_image, normalize, to_arrays
from .family import Family, diffusers_names
from .frames import FRAMES_OPTION, as_pil, check_chunk, check_frames, finish_video, from_frame_batch
from .images import preprocess_image
from .latents import check_size, initial_noise, vae_in, vae_scale_factor

# diffusers' _resize_with_antialiasing (kornia's gaussian blur, then bicubic with align_corners) ---------------


def _gaussian(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float32) - size // 2
    if size % 2 == 0:
        x = x + np.float32(0.5)
    g = np.exp(-x ** 2 / np.float32(2 * np.float32(sigma) ** 2))
    return g / g.sum()


def _blur_axis(x: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """Reflect-padded correlation of x [c, h, w] with a 1-d kernel along axis (kornia's filter2d pads front k//2)."""
    k = len(kernel)
    front = (k - 1) // 2
    pad = [(0, 0)] * 3
    pad[axis] = (front, k - 1 - front)
    p = np.pad(x, pad, mode="reflect")
    n = x.shape[axis]
    out = np.zeros_like(x)
    for j in range(k):
        out = out + kernel[j] * np.take(p, np.arange(j, j + n), axis=axis)
    return out


def _cubic_weights(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """torch's bicubic convolution weights (A = -0.75) of the taps -1, 0, 1, 2 at fractions t."""
    def near(d):
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], -1).astype(np.float32)


def _bicubic_axis(x: np.ndarray, out: int, axis: int) -> np.ndarray:
    """Bicubic resampling of x [c, h, w] to `out` samples along axis, align_corners=True, border taps clamped."""
    n = x.shape[axis]
    scale = np.float32((n - 1) / (out - 1)) if out > 1 else np.float32(0)
    src = np.arange(out, dtype=np.float32) * scale
    i0 = np.floor(src).astype(np.int64)
    w = _cubic_weights((src - i0).astype(np.float32))
    y = 0
    for j in range(4):
        idx = np.clip(i0 - 1 + j, 0, n - 1)
        shape = [1, 1, 1]
        shape[axis] = out
        y = y + np.take(x, idx, axis=axis) * w[:, j].reshape(shape)
    return y.astype(np.float32)


def resize_with_antialiasing(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """diffusers' SVD `_resize_with_antialiasing` of one [c, h, w] float32 image in [-1, 1]: a gaussian blur
    (sigma (factor - 1) / 2 per axis, kernel about 4 sigma, odd) then bicubic interpolation with align_corners."""
    h, w = image.shape[-2:]
    sigmas = (max((h / height - 1.0) / 2.0, 0.001), max((w / width - 1.0) / 2.0, 0.001))
    ks = [int(max(2.0 * 2 * s, 3)) for s in sigmas]
    ks = [k + 1 if k % 2 == 0 else k for k in ks]
    x = _blur_axis(image.astype(np.float32), _gaussian(ks[1], sigmas[1]), 2)
    x = _blur_axis(x, _gaussian(ks[0], sigmas[0]), 1)
    return _bicubic_axis(_bicubic_axis(x, height, 1), width, 2)


def clip_pixels(image, config: CLIPImageConfig) -> Float[Tensor, "b 3 224 224"]:
    """SVD's CLIP input: the image in [0, 1] resized to 224 x 224 with antialiasing (in [-1, 1], as diffusers) and
    normalised with the feature extractor's mean / std (no resize / crop / rescale by the processor)."""
    rows = []
    for a in to_arrays(image, True):
        a = a.astype(np.float32) / np.float32(255) if a.dtype == np.uint8 else a.astype(np.float32)
        x = resize_with_antialiasing(a.transpose(2, 0, 1) * np.float32(2) - np.float32(1), 224, 224)
        x = (x + np.float32(1)) / np.float32(2)
        rows.append(normalize(x.transpose(1, 2, 0), config.image_mean, config.image_std).transpose(2, 0, 1))
    return Tensor(np.stack(rows).astype(np.float32))


class FrameChannels(ExtraChannels):
    """ExtraChannels on [b, f, c, h, w] inputs: the image latents appended to every frame's channels (axis 2)."""

    def apply(self, xin: Tensor, inputs: tuple) -> Tensor:
        return mops.concat([xin, inputs[0].astype(xin.dtype)], axis=2)


def _image_encoder(components):
    encoder = components.extra.get("image_encoder")
    if encoder is None:
        raise ValueError("stable_video_diffusion: the pipeline has no image_encoder (a CLIPVisionModelWithProjection)")
    fe = components.extra.get("feature_extractor")
    return encoder, clip_image_config(fe) if isinstance(fe, dict) else CLIPImageConfig()


def decode_video(components, latents: Float[Tensor, "b f c h w"], decode_chunk_size: int,
                 vae_dtype="float32") -> Float[Tensor, "b 3 f H W"]:
    """Frames in [-1, 1]: the temporal decoder over decode_chunk_size frames at a time (each chunk decoded as a
    video of its length, diffusers' decode_latents)."""
    chunk = check_chunk(decode_chunk_size)
    vae = vae_in(components, vae_dtype)
    b, f = latents.shape[:2]
    z = latents.reshape((b * f,) + tuple(latents.shape[2:])) / np.float32(vae.config.scaling_factor)
    parts = []
    for i in range(0, z.shape[0], chunk):
        part = z[i:i + chunk]
        parts.append(vae.decode(part, part.shape[0]).astype(ms.float32))
    return from_frame_batch(mops.concat(parts, axis=0), f)


def _time_ids(components, fps: int, motion_bucket_id: int, noise_aug_strength: float, batch: int) -> Tensor:
    ids = np.tile(np.asarray([[fps, motion_bucket_id, noise_aug_strength]], np.float32), (batch, 1))
    c = components.unet.config
    expected = c.projection_class_embeddings_input_dim
    if expected is not None and c.addition_time_embed_dim * 3 != expected:
        raise ValueError(f"the UNet expects {expected} added time features, 3 time ids give "
                         f"{c.addition_time_embed_dim * 3}: the checkpoint's config is not an SVD UNet's")
    return Tensor(ids)


@diffusers_names
def stable_video_diffusion(components, image=None, *, height: int = 576, width: int = 1024,
                           num_frames: Optional[int] = None, num_inference_steps: int = 25,
                           min_guidance_scale: float = 1.0, max_guidance_scale: float = 3.0, fps: int = 7,
                           motion_bucket_id: int = 127, noise_aug_strength: float = 0.02,
                           decode_chunk_size: Optional[int] = None, num_videos_per_prompt: int = 1, latents=None,
                           output_type: str = "pil", seed: Optional[int] = None, sampler=None, noise=None,
                           callback: Optional[Callable] = None, mode: Optional[str] = None, vae_dtype="float32"):
    """A video from one image (diffusers' StableVideoDiffusionPipeline): frames as a list (per video) of PIL
    images, an array [b, f, h, w, 3] in [0, 1] ("np") or latents [b, f, 4, h/8, w/8] ("latent"). Draws: the
    image's noise augmentation, then the initial latents."""
    if image is None:
        raise ValueError("stable_video_diffusion: image is required (the first frame to animate)")
    image = as_pil(image)
    check_size(components, height, width)
    num_frames = check_frames(components.unet.config.num_frames if num_frames is None else num_frames)
    chunk = check_chunk(num_frames if decode_chunk_size is None else decode_chunk_size)
    for name, v in (("min_guidance_scale", min_guidance_scale), ("max_guidance_scale", max_guidance_scale),
                    ("noise_aug_strength", noise_aug_strength)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    guided = float(max_guidance_scale) > 1.0
    encoder, config = _image_encoder(components)
    emb = encode_image(encoder, clip_pixels(image, config), config, num_videos_per_prompt)
    tracker.add("image embeddings", emb)
    pixels = preprocess_image(image, height, width)
    pixels = pixels + noise_src.draw(tuple(pixels.shape)) * np.float32(noise_aug_strength)
    mean, _ = vae_in(components, vae_dtype).encode(pixels)
    image_latents = mops.tile(mean.astype(ms.float32), (num_videos_per_prompt, 1, 1, 1))  # whole-batch copies
    b = image_latents.shape[0]
    image_latents = cfg_batch(mops.zeros_like(image_latents) if guided else None, image_latents)
    image_latents = mops.tile(image_latents.expand_dims(1), (1, num_frames, 1, 1, 1))
    ids = _time_ids(components, fps - 1, motion_bucket_id, noise_aug_strength, b)
    smp = resolve_sampler(components.scheduler, sampler)
    schedule = make_schedule(smp, num_inference_steps)
    f = vae_scale_factor(components)
    shape = (b, num_frames, components.unet.config.in_channels // 2, height // f, width // f)
    x = initial_noise(shape, noise_src, latents)
    x = x * np.float32(schedule.init_noise_sigma) if schedule.init_noise_sigma != 1.0 else x
    tracker.add("initial latents", x)
    scale = np.linspace(min_guidance_scale, max_guidance_scale, num_frames, dtype=np.float32)
    scale = np.tile(scale[None], (b, 1)).reshape(b, num_frames, 1, 1, 1)
    model = compose(components.unet, NetInputs(encoder_hidden_states=cfg_batch(
        mops.zeros_like(emb) if guided else None, emb), added_time_ids=cfg_batch(ids if guided else None, ids)),
        FrameChannels(image_latents), guidance=CFG(Tensor(scale)) if guided else None)
    x = sample(model, x, schedule, smp, noise_src, callback, mode=mode, tracker=tracker)
    return finish_video(x, output_type, lambda z: decode_video(components, z, chunk, vae_dtype), tracker)


FAMILIES = (
    Family("stable_video_diffusion", stable_video_diffusion, ("StableVideoDiffusionPipeline",),
           {"image": "image", "size": "size", "frames": "num_frames", "sampler": "sampler"}, ("image",), steps=25,
           cli_options=(FRAMES_OPTION,),
           help="image-to-video (Stable Video Diffusion): --image, --frames; writes an animated GIF"),
)
