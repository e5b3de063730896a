"""Latent-diffusion recipes: `ldm_text_to_image` (diffusers' LDMTextToImagePipeline) and `ldm_super_resolution`
(LDMSuperResolutionPipeline), over `msdiff.load_pipeline` components (vqvae and bert come in `extra`).

`prompt` is text (tokenized by `components.tokenizer`, msdiff's BertTokenizer from the pipeline folder, padded and
truncated to 77 tokens as diffusers does; the negative prompt is "") or token ids [b, n]. Without guidance the
negative prompt is unused.
"""
import sys
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from mindspore import Tensor

from ..conditioning import CFG, ExtraChannels, NetInputs, cfg_batch, compose
from ..samplers import noise_source, resolve_sampler, sample
from .family import Family, diffusers_names
from .images import image_size, postprocess, preprocess_image
from .latents import initial_noise
from .prompts import PromptEmbeds


def _part(components, name: str):
    part = getattr(components, name, None) or getattr(components, "extra", {}).get(name)
    if part is None:
        raise ValueError(f"the components have no {name!r}")
    return part


def _ids(components, prompt) -> Tensor:
    """Token ids [b, n] from ids (array / Tensor) or text (tokenized by components.tokenizer, 77 tokens)."""
    texts = [prompt] if isinstance(prompt, str) else prompt
    if isinstance(texts, (list, tuple)) and texts and isinstance(texts[0], str):
        tok = getattr(components, "tokenizer", None)
        if tok is None:
            raise ValueError("the components have no tokenizer: load a pipeline folder with a BertTokenizer or pass "
                             "the prompt as token ids [b, n] (BertTokenizer, padding='max_length', max_length=77)")
        return Tensor(np.asarray(tok(list(texts), padding="max_length", max_length=77, truncation=True).input_ids,
                                 np.int32))
    ids = prompt.asnumpy() if isinstance(prompt, Tensor) else np.asarray(prompt)
    return Tensor(ids.astype(np.int32).reshape(-1, ids.shape[-1]))


def encode_ldm_prompt(components, prompt, *, guidance: bool, negative_prompt_ids=None) -> PromptEmbeds:
    """LDMBert hidden states of the prompt and, with guidance, of the empty prompt (or negative_prompt_ids)."""
    bert = _part(components, "bert")
    ids = _ids(components, prompt)
    negative = None
    if guidance:
        neg = negative_prompt_ids if negative_prompt_ids is not None else [""] * ids.shape[0]
        negative = bert(_ids(components, neg)).astype(ms.float32)
    return PromptEmbeds(bert(ids).astype(ms.float32), negative)


def _vq_decode(components, latents: Tensor, scale: bool) -> Tensor:
    vq = _part(components, "vqvae")
    if scale:
        latents = latents * np.float32(1 / vq.config.scaling_factor)
    return vq.decode(latents).astype(ms.float32)


@diffusers_names
def ldm_text_to_image(components, prompt, *, num_inference_steps: int = 50, guidance_scale: float = 1.0,
                      eta: float = 0.0, height: int = 256, width: int = 256, latents=None, seed: Optional[int] = None,
                      noise=None, output_type: str = "pil", mode: Optional[str] = None,
                      callback: Optional[Callable] = None, negative_prompt_ids=None):
    """Images from text with LDMBert + UNet2DConditionModel + VQModel (diffusers' LDMTextToImagePipeline)."""
    if height % 8 or width % 8:
        raise ValueError(f"height and width must be multiples of 8, got {height} and {width}")
    guided = guidance_scale != 1.0
    emb = encode_ldm_prompt(components, prompt, guidance=guided, negative_prompt_ids=negative_prompt_ids)
    unet = components.unet
    noise_src = noise_source(seed, noise)
    x = initial_noise((emb.prompt_embeds.shape[0], unet.config.in_channels, height // 8, width // 8), noise_src,
                      latents)
    smp = resolve_sampler(components.scheduler, eta=eta)
    model = compose(unet, NetInputs(encoder_hidden_states=cfg_batch(emb.negative_prompt_embeds, emb.prompt_embeds)),
                    guidance=CFG(guidance_scale) if guided else None)
    x = sample(model, x, smp.schedule(num_inference_steps), smp, noise_src, callback, mode=mode)
    if output_type == "latent":
        return x
    return postprocess(_vq_decode(components, x, scale=True), output_type)


@diffusers_names
def ldm_super_resolution(components, image, *, num_inference_steps: int = 100, eta: float = 0.0, latents=None,
                         seed: Optional[int] = None, noise=None, output_type: str = "pil", mode: Optional[str] = None,
                         callback: Optional[Callable] = None):
    """Upscaled images: UNet2DModel on latents concatenated with the low-res image, then VQModel decode
    (diffusers' LDMSuperResolutionPipeline). `image`: a [b, 3, h, w] Tensor in [-1, 1] or PIL image(s)
    (resized down to multiples of 32 with Lanczos, as diffusers)."""
    if isinstance(image, Tensor):
        low = image.astype(ms.float32)
    else:
        h, w = image_size(image)
        low = preprocess_image(image, h - h % 32, w - w % 32)
    unet = components.unet
    noise_src = noise_source(seed, noise)
    smp = resolve_sampler(components.scheduler, eta=eta)
    schedule = smp.schedule(num_inference_steps)
    x = initial_noise((low.shape[0], unet.config.in_channels // 2) + tuple(low.shape[2:]), noise_src, latents)
    x = x * np.float32(schedule.init_noise_sigma) if schedule.init_noise_sigma != 1.0 else x
    x = sample(compose(unet, ExtraChannels(low)), x, schedule, smp, noise_src, callback, mode=mode)
    if output_type == "latent":
        return x
    return postprocess(_vq_decode(components, x, scale=False), output_type)


def _t2i_cli(args, components, kwargs: dict) -> tuple:
    """diffusers' default size: the UNet's sample_size times the VQ-VAE's downscale factor.

    Like diffusers, the latents are size / 8 whatever the VQ-VAE's factor is (8 for the released checkpoints, so
    the image has the requested size there; a VQ-VAE with another factor gives an image scaled by factor / 8)."""
    vq = _part(components, "vqvae").config
    factor = 2 ** (len(vq.block_out_channels) - 1)
    given = "width" in kwargs
    if not given:
        kwargs["width"] = kwargs["height"] = components.unet.config.sample_size * factor
    if kwargs["width"] % 8 or kwargs["height"] % 8:
        where = ("--size" if given else f"the default size (the UNet's sample_size {components.unet.config.sample_size}"
                 f" x the VQ-VAE's factor {factor})")
        raise ValueError(f"LDMTextToImagePipeline needs a width and height that are multiples of 8; {where} gives "
                         f"{kwargs['width']}x{kwargs['height']}" + ("" if given else ": pass --size WxH"))
    if factor != 8:
        print(f"note: this VQ-VAE downsamples by {factor}, not 8; like diffusers the latents are --size / 8, so the "
              f"image is {kwargs['width'] * factor // 8}x{kwargs['height'] * factor // 8}", file=sys.stderr)
    kwargs.setdefault("prompt", "")
    return ldm_text_to_image, kwargs


FAMILIES = (
    Family("ldm_text_to_image", ldm_text_to_image, ("LDMTextToImagePipeline",),
           {"prompt": "prompt", "guidance": "guidance_scale", "size": "size"}, steps=50, prepare=_t2i_cli,
           help="--prompt, --guidance (default 1), --size (steps 50)"),
    Family("ldm_super_resolution", ldm_super_resolution, ("LDMSuperResolutionPipeline",), {"image": "image"},
           ("image",), steps=100, help="--image required (steps 100)"),
)
