"""Public recipe steps: noise, image pre/post-processing, prompt encoding, latent preparation, VAE encode/decode.

Each function is one arrow of a recipe's data flow and can be called alone to build a custom
pipeline (see `msdiff.recipes.text_to_image` for the composition). Tensors are float32 unless a
net's dtype says otherwise; numpy / PIL appear only at the image edges.
"""
import os
import weakref
from typing import Callable, NamedTuple, Optional, Sequence, Union

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..tokenizer import warn_truncated

ImageInput = Union["PIL.Image.Image", np.ndarray, str, os.PathLike, Tensor, Sequence]
NoiseInput = Union[None, Sequence, Callable]


class NonFiniteError(FloatingPointError):
    """A recipe produced inf/nan; the message names the first step where it appeared."""


# Noise ---------------------------------------------------------------------------------------------

class NoiseSource:
    """Standard-normal draws in order: from recorded arrays (`noise`), a callable, or a seeded numpy PCG64.

    Every random tensor of a recipe (initial latents, VAE posterior samples, img2img noise,
    ancestral/LCM step noise) comes from `draw(shape)`, outside any compiled graph, so a seed
    gives the same image in PyNative and graph mode.
    """

    def __init__(self, seed: Optional[int] = None, noise: NoiseInput = None):
        self.seed = seed
        self._fn = noise if callable(noise) else None
        self._list = None if noise is None or callable(noise) else list(noise)
        self._rng = np.random.default_rng(seed)
        self.count = 0

    def draw(self, shape) -> Float[Tensor, "..."]:
        """The next standard-normal float32 Tensor of `shape`."""
        shape = tuple(int(s) for s in shape)
        i, self.count = self.count, self.count + 1
        if self._list is not None:
            if i >= len(self._list):
                raise ValueError(f"noise: the recipe needs more than the {len(self._list)} noise arrays given "
                                 f"(draw {i} of shape {shape})")
            value = self._list[i]
        elif self._fn is not None:
            value = self._fn(shape)
        else:
            value = self._rng.standard_normal(shape, dtype=np.float32)
        value = value.asnumpy() if isinstance(value, Tensor) else np.asarray(value)
        if value.shape != shape:
            raise ValueError(f"noise: draw {i} has shape {value.shape}, the recipe needs {shape}")
        return Tensor(value.astype(np.float32))


# Images --------------------------------------------------------------------------------------------

def _to_pil(image):
    import PIL.Image

    if isinstance(image, (str, os.PathLike)):
        return PIL.Image.open(image)
    return image


def _as_list(image) -> list:
    if isinstance(image, (list, tuple)):
        return list(image)
    if isinstance(image, np.ndarray) and image.ndim == 4:
        return list(image)
    return [image]


def _pil_array(img, height: Optional[int], width: Optional[int], mode: str) -> np.ndarray:
    """PIL image -> float32 H x W (x C) in [0, 1], resized with Lanczos as diffusers' VaeImageProcessor."""
    import PIL.Image

    img = img.convert(mode)
    if (width, height) != img.size:
        img = img.resize((width, height), resample=PIL.Image.LANCZOS)
    return np.asarray(img).astype(np.float32) / np.float32(255.0)


def _numpy_image(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    return a.astype(np.float32)


def image_size(image: ImageInput) -> tuple:
    """(height, width) in pixels of a PIL / numpy (H W C, uint8 or [0, 1]) / path image (first of a list)."""
    first = _to_pil(_as_list(image)[0])
    if hasattr(first, "size") and not isinstance(first, (np.ndarray, Tensor)):
        return first.size[1], first.size[0]
    a = first.asnumpy() if isinstance(first, Tensor) else np.asarray(first)
    return a.shape[0], a.shape[1]


def default_size(image: ImageInput, height: Optional[int], width: Optional[int], factor: int) -> tuple:
    """diffusers' get_default_height_width: the image's size, rounded down to a multiple of factor."""
    h, w = image_size(image)
    height, width = height or h, width or w
    return height - height % factor, width - width % factor


def is_latent_image(image) -> bool:
    """True for a Tensor / array shaped (b, 4, h, w): latents passed as the image (refiner hand-off)."""
    if isinstance(image, (Tensor, np.ndarray)) and image.ndim == 4:
        return image.shape[1] == 4
    return False


def preprocess_image(image: ImageInput, height: int, width: int, normalize: bool = True) -> Float[Tensor, "b 3 h w"]:
    """PIL / numpy / path image(s) -> float32 (b, 3, height, width) in [-1, 1] (diffusers' VaeImageProcessor),
    or in [0, 1] with normalize=False (its do_normalize=False, e.g. ControlNet control images)."""
    rows = []
    for img in _as_list(image):
        img = _to_pil(img)
        if isinstance(img, Tensor):
            img = img.asnumpy()
        if isinstance(img, np.ndarray):
            a = _numpy_image(img)
            if a.ndim != 3 or a.shape[-1] != 3:
                raise ValueError(f"image: a numpy image must be H x W x 3 (uint8 or float in [0, 1]), got {a.shape}")
            if a.shape[:2] != (height, width):
                raise ValueError(f"image: numpy image of size {a.shape[:2]} but height, width = {(height, width)}; "
                                 f"resize it first or pass a PIL image")
        else:
            a = _pil_array(img, height, width, "RGB")
        rows.append(a)
    x = np.stack(rows).transpose(0, 3, 1, 2)
    return Tensor(np.float32(2.0) * x - np.float32(1.0) if normalize else x)


def preprocess_mask(mask_image: ImageInput, height: int, width: int,
                    image_hw: Optional[tuple] = None) -> Float[Tensor, "b 1 h w"]:
    """Mask image(s) -> binary float32 (b, 1, height, width), 1 = repaint (diffusers' mask processor).

    ValueError if the mask's size differs from image_hw (the input image's size) or height/width.
    """
    expect = image_hw or (height, width)
    got = image_size(mask_image)
    if tuple(got) != tuple(expect):
        raise ValueError(f"mask_image has size {got[0]}x{got[1]} (h x w) but the image is {expect[0]}x{expect[1]}; "
                         f"give a mask of the image's size")
    rows = []
    for m in _as_list(mask_image):
        m = _to_pil(m)
        if isinstance(m, Tensor):
            m = m.asnumpy()
        if isinstance(m, np.ndarray):
            a = _numpy_image(m)
            a = a.mean(-1) if a.ndim == 3 else a
            if a.shape != (height, width):
                raise ValueError(f"mask_image: numpy mask of size {a.shape} but height, width = {(height, width)}")
        else:
            a = _pil_array(m, height, width, "L")
        rows.append(np.where(a < 0.5, 0.0, 1.0).astype(np.float32))
    return Tensor(np.stack(rows)[:, None])


def postprocess(image: Float[Tensor, "b 3 h w"], output_type: str = "pil"):
    """Decoded image in [-1, 1] -> np.ndarray (b, h, w, 3) in [0, 1] ("np") or a list of PIL images ("pil")."""
    x = mops.clamp(image.astype(ms.float32) / 2 + 0.5, 0.0, 1.0).asnumpy().transpose(0, 2, 3, 1)
    if output_type == "np":
        return x
    if output_type == "pil":
        import PIL.Image

        return [PIL.Image.fromarray(v) for v in (x * 255).round().astype(np.uint8)]
    raise ValueError(f"output_type must be 'pil', 'np' or 'latent', got {output_type!r}")


# Prompt --------------------------------------------------------------------------------------------

class PromptEmbeds(NamedTuple):
    """Text conditioning: embeds[b, n, d], negative (or None without guidance), pooled ones for SD-XL."""

    prompt_embeds: Tensor
    negative_prompt_embeds: Optional[Tensor] = None
    pooled_prompt_embeds: Optional[Tensor] = None
    negative_pooled_prompt_embeds: Optional[Tensor] = None


def _texts(prompt, batch: Optional[int] = None) -> list:
    texts = [prompt] if isinstance(prompt, str) else list(prompt)
    if batch is not None and len(texts) == 1 and batch > 1:
        texts = texts * batch
    if batch is not None and len(texts) != batch:
        raise ValueError(f"negative_prompt has {len(texts)} entries but prompt has {batch}")
    return texts


def _tokens(tokenizer, texts: list, max_length: Optional[int] = None) -> Tensor:
    max_length = max_length or tokenizer.model_max_length
    toks = tokenizer(texts, padding="max_length", max_length=max_length, truncation=True)
    warn_truncated(toks, max_length)
    return Tensor(toks.input_ids)


def _repeat(x: Optional[Tensor], n: int) -> Optional[Tensor]:
    """Each row repeated n times in a row (diffusers' repeat(1, n, 1).view(b * n, ...))."""
    if x is None or n == 1:
        return x
    return mops.repeat_interleave(x, n, 0)


def _encode_sd(encoder, ids: Tensor, clip_skip: Optional[int]) -> Tensor:
    last, _, states = encoder(ids)
    if clip_skip is None:
        return last
    return encoder.final_layer_norm(states[-(clip_skip + 1)])


def encode_prompt(components, prompt=None, negative_prompt=None, *, num_images_per_prompt: int = 1,
                  guidance: bool = True, clip_skip: Optional[int] = None, prompt_embeds: Optional[Tensor] = None,
                  negative_prompt_embeds: Optional[Tensor] = None) -> PromptEmbeds:
    """SD 1.x/2.x text conditioning (diffusers' StableDiffusionPipeline.encode_prompt); clip_skip skips layers."""
    tok, enc = components.tokenizer, components.text_encoder
    if prompt_embeds is None:
        texts = _texts(prompt)
        prompt_embeds = _encode_sd(enc, _tokens(tok, texts), clip_skip)
    batch = prompt_embeds.shape[0]
    if guidance and negative_prompt_embeds is None:
        neg = _texts("" if negative_prompt is None else negative_prompt, batch)
        negative_prompt_embeds = enc(_tokens(tok, neg, prompt_embeds.shape[1]))[0]
    n = num_images_per_prompt
    return PromptEmbeds(_repeat(prompt_embeds.astype(ms.float32), n),
                        _repeat(None if not guidance else negative_prompt_embeds.astype(ms.float32), n))


def _xl_pairs(components):
    pairs = [(components.tokenizer, components.text_encoder), (components.tokenizer_2, components.text_encoder_2)]
    return [(t, e) for t, e in pairs if e is not None]


def _encode_xl(pairs, texts_per_encoder, clip_skip, max_length=None):
    embeds, pooled = [], None
    for (tok, enc), texts in zip(pairs, texts_per_encoder):
        last, second, states = enc(_tokens(tok, texts, max_length))
        if type(enc).__name__ == "CLIPTextModelWithProjection":
            pooled = second
        embeds.append(states[-2] if clip_skip is None else states[-(clip_skip + 2)])
    return mops.concat(embeds, axis=-1), pooled


def encode_prompt_xl(components, prompt=None, negative_prompt=None, *, prompt_2=None, negative_prompt_2=None,
                     num_images_per_prompt: int = 1, guidance: bool = True, clip_skip: Optional[int] = None,
                     prompt_embeds: Optional[Tensor] = None, negative_prompt_embeds: Optional[Tensor] = None,
                     pooled_prompt_embeds: Optional[Tensor] = None,
                     negative_pooled_prompt_embeds: Optional[Tensor] = None,
                     force_zeros_for_empty_prompt: Optional[bool] = None) -> PromptEmbeds:
    """SD-XL conditioning from both text encoders (diffusers' StableDiffusionXLPipeline.encode_prompt)."""
    pairs = _xl_pairs(components)
    if force_zeros_for_empty_prompt is None:
        force_zeros_for_empty_prompt = components.options.get("force_zeros_for_empty_prompt", True)
    if prompt_embeds is None:
        texts = _texts(prompt)
        texts_2 = _texts(prompt_2) if prompt_2 is not None else texts
        per = [texts, texts_2] if len(pairs) == 2 else [texts_2]
        prompt_embeds, pooled_prompt_embeds = _encode_xl(pairs, per, clip_skip)
    batch = prompt_embeds.shape[0]
    if guidance and negative_prompt_embeds is None:
        if negative_prompt is None and force_zeros_for_empty_prompt:
            negative_prompt_embeds = mops.zeros_like(prompt_embeds)
            negative_pooled_prompt_embeds = mops.zeros_like(pooled_prompt_embeds)
        else:
            neg = _texts(negative_prompt or "", batch)
            neg_2 = _texts(negative_prompt_2, batch) if negative_prompt_2 is not None else neg
            per = [neg, neg_2] if len(pairs) == 2 else [neg_2]
            negative_prompt_embeds, negative_pooled_prompt_embeds = _encode_xl(pairs, per, None,
                                                                               prompt_embeds.shape[1])
    n = num_images_per_prompt
    f32 = [None if t is None else t.astype(ms.float32) for t in
           (prompt_embeds, negative_prompt_embeds if guidance else None, pooled_prompt_embeds,
            negative_pooled_prompt_embeds if guidance else None)]
    return PromptEmbeds(*(_repeat(t, n) for t in f32))


def add_time_ids(original_size, crops_coords_top_left, target_size, aesthetic_score: Optional[float] = None,
                 batch: int = 1) -> Float[Tensor, "b k"]:
    """SD-XL micro-conditioning row (original h, w, crop top, left, target h, w | aesthetic score) per image."""
    tail = tuple(target_size) if aesthetic_score is None else (aesthetic_score,)
    row = np.asarray(tuple(original_size) + tuple(crops_coords_top_left) + tail, np.float32)
    return Tensor(np.tile(row[None], (batch, 1)))


def guidance_scale_embedding(w: float, dim: int, batch: int = 1) -> Float[Tensor, "b d"]:
    """Sinusoidal embedding of (w * 1000) for LCM's timestep_cond (VDM, Kingma et al. 2021, as diffusers)."""
    half = dim // 2
    freq = np.exp(np.arange(half, dtype=np.float32) * -(np.float32(np.log(10000.0)) / np.float32(half - 1)))
    arg = np.float32(w * 1000.0) * freq.astype(np.float32)
    emb = np.concatenate([np.sin(arg), np.cos(arg)]).astype(np.float32)
    if dim % 2 == 1:
        emb = np.concatenate([emb, np.zeros(1, np.float32)])
    return Tensor(np.tile(emb[None], (batch, 1)))


# Latents -------------------------------------------------------------------------------------------

def vae_scale_factor(components) -> int:
    """2 ** (number of VAE blocks - 1): pixels per latent (8 for SD)."""
    return 2 ** (len(components.vae.config.block_out_channels) - 1)


def check_size(components, height: int, width: int) -> None:
    """ValueError unless height and width are positive multiples of the VAE scale factor."""
    f = vae_scale_factor(components)
    if height <= 0 or width <= 0 or height % f or width % f:
        raise ValueError(f"height and width must be positive multiples of {f} (the VAE scale factor), "
                         f"got height={height}, width={width}; try {max(f, height - height % f)}x"
                         f"{max(f, width - width % f)}")


def initial_noise(shape: tuple, noise: NoiseSource, latents=None) -> Float[Tensor, "..."]:
    """`latents` (checked against `shape`, as float32) if given, else a draw of `shape` from `noise`."""
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


class FiniteTracker:
    """Cheap non-finite bookkeeping: one isfinite flag per stage, read only when the end result is bad."""

    def __init__(self):
        self.stages = []

    def add(self, name: str, x: Tensor) -> None:
        """Record whether x (the output of stage `name`) is all finite (no host sync here)."""
        self.stages.append((name, mops.isfinite(x).all()))

    def check(self, latents: Tensor) -> None:
        """NonFiniteError naming the first non-finite stage if latents hold inf/nan."""
        if bool(mops.isfinite(latents).all()):
            return
        first = next((name for name, ok in self.stages if not bool(ok)), "the final latents")
        raise NonFiniteError(f"non-finite values (inf/nan) first appeared in {first}. In float16 this is "
                             f"usually an overflow: load the pipeline with dtype='float32' (msdiff.load_pipeline"
                             f"(..., dtype='float32')), keep the VAE in float32 (vae_dtype='float32'), or "
                             f"lower guidance_scale; msdiff.diagnose.first_nonfinite(net, ...) finds the block")
