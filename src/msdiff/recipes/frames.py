"""Video pieces the video recipes share: frame batches in and out of [b, c, f, h, w] latents, frame-chunked VAE
encode / decode (2-D VAEs frame by frame, the temporal decoder chunk by chunk) and the frames output."""
import os
from pathlib import Path

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..samplers import NonFiniteError
from .images import postprocess, preprocess_image
from .latents import vae_in


def check_chunk(decode_chunk_size, what: str = "decode_chunk_size") -> int:
    """decode_chunk_size as a positive int (ValueError otherwise)."""
    if isinstance(decode_chunk_size, bool) or not isinstance(decode_chunk_size, (int, np.integer)) or \
            decode_chunk_size < 1:
        raise ValueError(f"{what} must be a positive integer, got {decode_chunk_size!r}")
    return int(decode_chunk_size)


def check_frames(num_frames, what: str = "num_frames") -> int:
    """num_frames as a positive int (ValueError otherwise)."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"{what} must be a positive integer, got {num_frames!r}")
    return int(num_frames)


def to_frame_batch(x: Float[Tensor, "b c f h w"]) -> Float[Tensor, "bf c h w"]:
    """[b, c, f, h, w] -> [b * f, c, h, w], frames of a video consecutive."""
    b, c, f, h, w = x.shape
    return x.transpose(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def from_frame_batch(x: Float[Tensor, "bf c h w"], num_frames: int) -> Float[Tensor, "b c f h w"]:
    """[b * f, c, h, w] -> [b, c, f, h, w]."""
    bf, c, h, w = x.shape
    return x.reshape(bf // num_frames, num_frames, c, h, w).transpose(0, 2, 1, 3, 4)


# the command line's video options (declared by each video family; the parser adds each flag once)
FRAMES_OPTION = ("--frames", dict(type=int, default=None, help="video pipelines: number of frames"))
VIDEO_OPTION = ("--video", dict(default=None, help="AnimateDiff video-to-video: the input video (an animated GIF "
                                                   "or any multi-frame file Pillow reads)"))


def as_pil(image):
    """A PIL RGB image from a PIL image, an H x W x 3 uint8 array or a file path."""
    import PIL.Image

    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise ValueError(f"image {str(image)!r}: no such file")
        with PIL.Image.open(path) as im:
            return im.convert("RGB")
    if isinstance(image, np.ndarray):
        return PIL.Image.fromarray(image)
    if isinstance(image, PIL.Image.Image):
        return image.convert("RGB")
    raise TypeError(f"image must be a PIL image, an HxWx3 uint8 array or a path, got {type(image).__name__}")


def read_video(path) -> list:
    """Every frame of an animated GIF (or another multi-frame file Pillow reads) as RGB PIL images."""
    import PIL.Image
    import PIL.ImageSequence

    if not Path(path).is_file():
        raise ValueError(f"video {str(path)!r}: no such file")
    with PIL.Image.open(path) as im:
        return [frame.convert("RGB") for frame in PIL.ImageSequence.Iterator(im)]


def preprocess_video(video, height: int, width: int) -> Float[Tensor, "f 3 h w"]:
    """A list of frames (PIL images / HWC arrays), an array [f, h, w, 3] or a file (read_video) -> [f, 3, height,
    width] in [-1, 1] (diffusers' VideoProcessor.preprocess_video of one video, frames resized as images)."""
    if isinstance(video, (str, os.PathLike)):
        video = read_video(video)
    if isinstance(video, np.ndarray) and video.ndim == 4:
        video = list(video)
    if not isinstance(video, (list, tuple)) or not video:
        raise ValueError("video must be a non-empty list of frames (PIL images or HxWx3 arrays) or an array "
                         "[frames, h, w, 3]")
    return preprocess_image(list(video), height, width)


def decode_frames(components, latents: Float[Tensor, "b c f h w"], decode_chunk_size: int = 16,
                  vae_dtype="float32") -> Float[Tensor, "b 3 f H W"]:
    """Frames in [-1, 1] from UNet-scale video latents: unscaled, decoded by a 2-D VAE decode_chunk_size frames at a
    time (diffusers' AnimateDiff / I2VGenXL decode_latents), in vae_dtype (fp32 by default)."""
    chunk = check_chunk(decode_chunk_size)
    vae = vae_in(components, vae_dtype)
    f = latents.shape[2]
    z = to_frame_batch(latents / np.float32(vae.config.scaling_factor))
    parts = [vae.decode(z[i:i + chunk]).astype(ms.float32) for i in range(0, z.shape[0], chunk)]
    return from_frame_batch(mops.concat(parts, axis=0), f)


def encode_frames(components, frames: Float[Tensor, "f 3 h w"], noise, decode_chunk_size: int = 16,
                  vae_dtype="float32") -> Float[Tensor, "f c h2 w2"]:
    """Posterior samples of a video's frames, decode_chunk_size frames per VAE call (one noise draw per chunk, as
    diffusers' encode_video), scaled by the VAE's scaling_factor."""
    from ..nets.autoencoder_kl import sample_latent

    chunk = check_chunk(decode_chunk_size)
    vae = vae_in(components, vae_dtype)
    parts = []
    for i in range(0, frames.shape[0], chunk):
        mean, logvar = vae.encode(frames[i:i + chunk])
        mean, logvar = mean.astype(ms.float32), logvar.astype(ms.float32)
        parts.append(sample_latent(mean, logvar, noise.draw(mean.shape)))
    return mops.concat(parts, axis=0) * np.float32(vae.config.scaling_factor)


def postprocess_video(video: Float[Tensor, "b 3 f h w"], output_type: str = "pil"):
    """Frames in [-1, 1] -> np.ndarray [b, f, h, w, 3] in [0, 1] ("np") or a list (per video) of lists of PIL
    images ("pil") (diffusers' VideoProcessor.postprocess_video)."""
    if not bool(mops.isfinite(video).all()):
        raise NonFiniteError("the VAE decode produced inf/nan from finite latents: decode in float32 "
                             "(vae_dtype='float32', the default) or load the VAE in float32")
    b, f = video.shape[0], video.shape[2]
    frames = postprocess(to_frame_batch(video), output_type)
    if output_type == "np":
        return frames.reshape((b, f) + frames.shape[1:])
    return [frames[i * f:(i + 1) * f] for i in range(b)]


def finish_video(video_or_latents: Tensor, output_type: str, decode, tracker=None):
    """The end of a video recipe: check the latents are finite; latents for "latent", else decode(latents) post-
    processed as frames."""
    if tracker is not None:
        tracker.check(video_or_latents)
    if output_type == "latent":
        return video_or_latents
    if output_type not in ("pil", "np"):
        raise ValueError(f"output_type must be 'pil', 'np' or 'latent', got {output_type!r}")
    return postprocess_video(decode(video_or_latents), output_type)

