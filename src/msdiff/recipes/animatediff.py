"""AnimateDiff (Guo et al. 2023): AnimateDiffPipeline and AnimateDiffVideoToVideoPipeline as recipes.

An SD 1.5 UNet with a MotionAdapter's temporal modules (a UNetMotionModel) denoises [b, 4, f, h, w] latents with
the SD text conditioning (one context per video, repeated to its frames inside the net) and classifier-free
guidance on THE loop; the 2-D VAE decodes decode_chunk_size frames at a time. A pipeline folder saved by diffusers
holds the assembled UNetMotionModel; `animatediff_components(sd_folder, motion_adapter_folder)` assembles it like
diffusers' UNetMotionModel.from_unet2d from an SD pipeline folder and a motion adapter folder.
"""
import dataclasses
from typing import Callable, Optional

import mindspore as ms
import numpy as np

from ..conditioning import CFG, NetInputs, cfg_batch, compose, make_schedule
from ..samplers import FiniteTracker, add_noise, noise_source, resolve_sampler, sample
from .family import Family, diffusers_names
from .frames import FRAMES_OPTION, VIDEO_OPTION, check_chunk, check_frames, decode_frames, encode_frames, \
    finish_video, preprocess_video
from .latents import initial_noise, vae_scale_factor
from .sd import TextArgs, default_hw, default_steps, text_conditioning

_TEXT = {f.name for f in dataclasses.fields(TextArgs)} - {"pooled_prompt_embeds", "negative_pooled_prompt_embeds",
                                                           "prompt_2", "negative_prompt_2"}


def animatediff_components(sd_folder, motion_adapter, *, dtype="float32"):
    """An SD pipeline folder plus a MotionAdapter folder -> AnimateDiffPipeline components: the UNet2DCondition
    Model and the adapter assembled into a UNetMotionModel (diffusers' UNetMotionModel.from_unet2d: the UNet's
    weights and the adapter's motion modules, strict on both key sets)."""
    from mindspore.nn.utils import no_init_parameters

    from ..io import load_pipeline, parse_dtype
    from ..io.loader import read_config
    from ..io.paths import resolve_folder
    from ..io.weights import find_weight_files, load_weights
    from ..nets import unet_motion as um

    sd, adapter = resolve_folder(sd_folder), resolve_folder(motion_adapter)
    config = um.config_from_unet2d(read_config(sd / "unet"), read_config(adapter))
    with no_init_parameters():
        net = um.UNetMotionModel(config, dtype=parse_dtype(dtype))
    files = find_weight_files(sd / "unet")[1] + find_weight_files(adapter)[1]
    load_weights(net, files, um.map_weights)
    net.set_train(False)
    components = load_pipeline(sd, dtype=dtype, skip=("safety_checker", "feature_extractor", "unet"))
    return dataclasses.replace(components, unet=net, pipeline_class="AnimateDiffPipeline")


def _check_unet(components, recipe: str) -> None:
    if type(components.unet).__name__ != "UNetMotionModel":
        raise ValueError(f"{recipe}: the pipeline's unet is a {type(components.unet).__name__}, not a "
                         f"UNetMotionModel: assemble one from an SD folder and a motion adapter with "
                         f"recipes.animatediff_components(sd_folder, motion_adapter_folder)")


def _text(recipe: str, kwargs: dict) -> TextArgs:
    unknown = sorted(set(kwargs) - _TEXT)
    if unknown:
        raise TypeError(f"{recipe}() got unexpected keyword argument(s) {unknown}; its prompt keywords: "
                        f"{', '.join(sorted(_TEXT))}")
    return TextArgs(**kwargs)


def _denoise(components, emb, x, schedule, smp, noise_src, guidance_scale, callback, mode, tracker):
    guided = emb.negative_prompt_embeds is not None
    model = compose(components.unet, NetInputs(encoder_hidden_states=cfg_batch(emb.negative_prompt_embeds,
                                                                               emb.prompt_embeds)),
                    guidance=CFG(guidance_scale) if guided else None)
    return sample(model, x, schedule, smp, noise_src, callback, mode=mode, tracker=tracker)


@diffusers_names
def animatediff(components, prompt=None, negative_prompt=None, *, num_frames: int = 16,
                height: Optional[int] = None, width: Optional[int] = None, num_inference_steps: Optional[int] = None,
                guidance_scale: float = 7.5, num_videos_per_prompt: int = 1, latents=None,
                decode_chunk_size: int = 16, output_type: str = "pil", seed: Optional[int] = None, sampler=None,
                noise=None, callback: Optional[Callable] = None, mode: Optional[str] = None, vae_dtype="float32",
                **text):
    """Videos from text (diffusers' AnimateDiffPipeline): frames as a list (per video) of PIL images, an array
    [b, f, h, w, 3] in [0, 1] ("np") or latents [b, 4, f, h/8, w/8] ("latent")."""
    _check_unet(components, "animatediff")
    num_frames, chunk = check_frames(num_frames), check_chunk(decode_chunk_size)
    steps = default_steps(components, num_inference_steps)
    height, width = default_hw(components, height, width)
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    emb = text_conditioning(components, prompt, negative_prompt, _text("animatediff", text),
                            guidance=float(guidance_scale) > 1.0, num_images_per_prompt=num_videos_per_prompt,
                            tracker=tracker)
    smp = resolve_sampler(components.scheduler, sampler)
    schedule = make_schedule(smp, steps)
    f = vae_scale_factor(components)
    shape = (emb.prompt_embeds.shape[0], components.unet.config.in_channels, num_frames, height // f, width // f)
    x = initial_noise(shape, noise_src, latents)
    x = x * np.float32(schedule.init_noise_sigma) if schedule.init_noise_sigma != 1.0 else x
    tracker.add("initial latents", x)
    x = _denoise(components, emb, x, schedule, smp, noise_src, guidance_scale, callback, mode, tracker)
    return finish_video(x, output_type, lambda z: decode_frames(components, z, chunk, vae_dtype), tracker)


@diffusers_names
def animatediff_video_to_video(components, video=None, prompt=None, negative_prompt=None, *, strength: float = 0.8,
                               height: Optional[int] = None, width: Optional[int] = None,
                               num_inference_steps: Optional[int] = None, guidance_scale: float = 7.5,
                               num_videos_per_prompt: int = 1, decode_chunk_size: int = 16,
                               output_type: str = "pil", seed: Optional[int] = None, sampler=None, noise=None,
                               callback: Optional[Callable] = None, mode: Optional[str] = None, vae_dtype="float32",
                               **text):
    """A video restyled by text (diffusers' AnimateDiffVideoToVideoPipeline): `video` (a list of frames) encoded
    frame-chunk by frame-chunk, noised to the first kept call of `strength`, denoised; outputs as animatediff.
    Draws: the posterior sample of each chunk, then the noise [b, f, 4, h, w]."""
    _check_unet(components, "animatediff_video_to_video")
    if video is None:
        raise ValueError("animatediff_video_to_video: video is required (a list of frames)")
    chunk = check_chunk(decode_chunk_size)
    steps = default_steps(components, num_inference_steps)
    height, width = default_hw(components, height, width)
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    emb = text_conditioning(components, prompt, negative_prompt, _text("animatediff_video_to_video", text),
                            guidance=float(guidance_scale) > 1.0, num_images_per_prompt=num_videos_per_prompt,
                            tracker=tracker)
    smp = resolve_sampler(components.scheduler, sampler)
    schedule = make_schedule(smp, steps, strength)
    b = emb.prompt_embeds.shape[0]
    if b != 1:
        raise ValueError(f"animatediff_video_to_video: one video is restyled per call; got {b} prompts x videos "
                         f"(diffusers refuses more prompts than videos)")
    init = encode_frames(components, preprocess_video(video, height, width), noise_src, chunk, vae_dtype)
    init = init.expand_dims(0)  # [1, f, c, h, w]
    eps = initial_noise(tuple(init.shape), noise_src)
    x = add_noise(schedule, init, eps, 0).transpose(0, 2, 1, 3, 4).astype(ms.float32)
    tracker.add("initial latents (video encode)", x)
    x = _denoise(components, emb, x, schedule, smp, noise_src, guidance_scale, callback, mode, tracker)
    return finish_video(x, output_type, lambda z: decode_frames(components, z, chunk, vae_dtype), tracker)


_OPTIONS = {"prompt": "prompt", "negative_prompt": "negative_prompt", "guidance": "guidance_scale",
            "sampler": "sampler", "size": "size", "frames": "num_frames"}

FAMILIES = (
    Family("animatediff", animatediff, ("AnimateDiffPipeline",), _OPTIONS, ("prompt",), steps=25,
           cli_options=(FRAMES_OPTION,), help="text-to-video (AnimateDiff): --frames; writes an animated GIF"),
    Family("animatediff_video_to_video", animatediff_video_to_video, ("AnimateDiffVideoToVideoPipeline",),
           {k: v for k, v in _OPTIONS.items() if k != "frames"} | {"video": "video", "strength": "strength"},
           ("prompt", "video"), steps=25, cli_options=(VIDEO_OPTION,),
           help="video-to-video (AnimateDiff): --video FILE.gif, --strength; writes an animated GIF"),
)
