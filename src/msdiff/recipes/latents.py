"""Latents: the VAE scale factor and size checks, initial noise, VAE encode / decode in fp32, the last step."""
import os
import weakref
from typing import Optional

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..budget import check_decode
from ..samplers import NoiseSource, NonFiniteError
from .images import postprocess


def vae_scale_factor(components) -> int:
    """2 ** (number of VAE blocks - 1): pixels per latent (8 for SD)."""
    return 2 ** (len(components.vae.config.block_out_channels) - 1)


def check_size(components, height: int, width: int) -> None:
    """ValueError unless height and width are positive multiples of the VAE scale factor."""
    f = vae_scale_factor(components)
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer number of pixels, got {v!r}")
    if height <= 0 or width <= 0 or height % f or width % f:
        raise ValueError(f"height and width must be positive multiples of {f} (the VAE scale factor), "
                         f"got height={height}, width={width}; try {max(f, height - height % f)}x"
                         f"{max(f, width - width % f)}")


# a lower bound of the float32 copies of the latents one denoising step holds (UNet activations of 320+ channels per
# 4 latent channels, guidance copies); a real SD-1.5 step at 64x64 latents holds far more (attention scores)
_ACTIVATION_FACTOR = 200


def check_memory(shape: tuple, what: str = "the latents") -> None:
    """MemoryError before allocating, when one step over latents of `shape` needs more than this machine's memory
    (a lower-bound estimate: _ACTIVATION_FACTOR float32 copies), with the estimate and what to try instead."""
    n = 1
    for d in shape:
        n *= int(d)
    need = n * 4 * _ACTIVATION_FACTOR
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > have:
        raise MemoryError(f"{what} of shape {tuple(shape)} need at least {need / 2**30:.0f} GiB to denoise, this "
                          f"machine has {have / 2**30:.0f} GiB: use a smaller size or batch (or tiling / fp16)")


def initial_noise(shape: tuple, noise: NoiseSource, latents=None) -> Float[Tensor, "..."]:
    """`latents` (checked against `shape`, as float32) if given, else a draw of `shape` from `noise`."""
    check_memory(shape)
    if latents is None:
        return noise.draw(shape)
    x = latents if isinstance(latents, Tensor) else Tensor(np.asarray(latents, np.float32))
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"latents have shape {tuple(x.shape)}, expected {tuple(shape)}")
    return x.astype(ms.float32)


def prepare_latents(components, batch: int, height: int, width: int, noise: NoiseSource,
                    latents: Optional[Tensor] = None, init_noise_sigma: float = 1.0) -> Float[Tensor, "b c h w"]:
    """Initial latents (b, C, height/f, width/f): given `latents` or a draw, times the sampler's init sigma."""
    f = vae_scale_factor(components)
    shape = (batch, components.vae.config.latent_channels, height // f, width // f)
    check_decode(components.vae, shape)  # the decode comes after every step: refuse an oversized one before them
    latents = initial_noise(shape, noise, latents)
    return latents * np.float32(init_noise_sigma) if init_noise_sigma != 1.0 else latents


_FP32_COPIES = weakref.WeakKeyDictionary()


def vae_in(components, vae_dtype="float32"):
    """The VAE to run: as loaded (vae_dtype=None) or a cached copy in vae_dtype (default fp32, as SD's upcast)."""
    vae = components.vae
    if vae_dtype is None:
        return vae
    from ..io import parse_dtype

    dtype = parse_dtype(vae_dtype)
    if vae.compute_dtype == dtype:
        return vae
    cache = _FP32_COPIES.setdefault(vae, {})
    if dtype not in cache:
        copy = type(vae)(vae.config, dtype=dtype)
        source = dict(vae.parameters_and_names())
        for name, p in copy.parameters_and_names():
            p.set_data(source[name].astype(dtype))
        copy.set_train(False)
        cache[dtype] = copy
    return cache[dtype]


def _scale(vae, z: Tensor) -> Tensor:
    c = vae.config
    if c.latents_mean is not None and c.latents_std is not None:
        mean = Tensor(np.asarray(c.latents_mean, np.float32).reshape(1, -1, 1, 1))
        std = Tensor(np.asarray(c.latents_std, np.float32).reshape(1, -1, 1, 1))
        return (z - mean) * np.float32(c.scaling_factor) / std
    return z * np.float32(c.scaling_factor)


def encode_image(components, image: Float[Tensor, "b 3 h w"], noise: Optional[NoiseSource] = None,
                 vae_dtype="float32", scale: bool = True) -> Float[Tensor, "b c h2 w2"]:
    """VAE latents of a preprocessed image: a posterior sample (noise given) or its mean, scaled for the UNet."""
    from ..nets.autoencoder_kl import sample_latent

    vae = vae_in(components, vae_dtype)
    mean, logvar = vae.encode(image)
    mean, logvar = mean.astype(ms.float32), logvar.astype(ms.float32)
    z = mean if noise is None else sample_latent(mean, logvar, noise.draw(mean.shape))
    return _scale(vae, z) if scale else z


def decode(components, latents: Float[Tensor, "b c h w"], vae_dtype="float32") -> Float[Tensor, "b 3 h2 w2"]:
    """Image in [-1, 1] from UNet-scale latents (unscaled by scaling_factor or latents_mean/std), VAE in vae_dtype."""
    vae = vae_in(components, vae_dtype)
    c = vae.config
    if c.latents_mean is not None and c.latents_std is not None:
        mean = Tensor(np.asarray(c.latents_mean, np.float32).reshape(1, -1, 1, 1))
        std = Tensor(np.asarray(c.latents_std, np.float32).reshape(1, -1, 1, 1))
        z = latents * std / np.float32(c.scaling_factor) + mean
    else:
        z = latents / np.float32(c.scaling_factor)
    return vae.decode(z).astype(ms.float32)


def finish(components, latents: Tensor, output_type: str, vae_dtype, tracker=None):
    """Check the final latents are finite, then decode and post-process (or return latents for "latent")."""
    if tracker is not None:
        tracker.check(latents)
    if output_type == "latent":
        return latents
    if output_type not in ("pil", "np"):
        raise ValueError(f"output_type must be 'pil', 'np' or 'latent', got {output_type!r}")
    image = decode(components, latents, vae_dtype)
    if tracker is not None and not bool(mops.isfinite(image).all()):
        raise NonFiniteError("the VAE decode produced inf/nan from finite latents: decode in float32 "
                             "(vae_dtype='float32', the default) or load the VAE in float32")
    return postprocess(image, output_type)
