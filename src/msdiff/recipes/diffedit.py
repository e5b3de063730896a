"""DiffEdit (Couairon et al. 2022; diffusers' StableDiffusionDiffEditPipeline) as three public functions.

    mask = generate_mask(c, image, target_prompt="a dog", source_prompt="a cat")   # where the prompts disagree
    inv = invert(c, "a cat", image)                                               # DDIM inversion, every step
    images = diffedit(c, "a dog", mask_image=mask, image_latents=inv)             # masked edit

generate_mask noises the image latents once (mask_encode_strength) and thresholds the mean |eps_target -
eps_source| of num_maps_per_mask noise draws; invert runs the pipeline's DDIMInverseScheduler (the sampler
ddim_inverse) and keeps the latents after every step; the edit denoises from the most-inverted latents and, after
each step, keeps the inverted latents of that step outside the mask (`InvertedBlend`, inside the compiled step).
"""
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops as mops

from ..conditioning import CFG, NetInputs, NoGuidance, Piece, cfg_batch, compose, make_schedule, truncate
from ..samplers import FiniteTracker, add_noise, noise_source, resolve_sampler, sample, sample_steps
from ..settings import resolve_mode
from . import diffedit_reg as R
from .family import Family, diffusers_names
from .images import default_size, preprocess_image
from .latents import encode_image, finish, vae_scale_factor
from .prompts import encode_prompt
from .sd import split_conditioning, text_conditioning, tile_batch


class InvertedBlend(Piece):
    """After step i, the latents outside the mask (mask 0) are replaced by the inverted latents inverted[i]
    (diffusers' DiffEdit loop); the step index reaches the compiled step as a one-hot per-call vector."""

    role = "post"

    def __init__(self, inverted: Float[Tensor, "n b c h w"], mask: Float[Tensor, "b 1 h w"]):
        self.inputs = (inverted, mask)
        self.n_scales = int(inverted.shape[0])
        self.key = ("inverted_blend", self.n_scales)

    def scales(self, i: int, n: int) -> tuple:
        return tuple(1.0 if j == i else 0.0 for j in range(self.n_scales))

    def apply(self, x: Tensor, inputs: tuple, scales: Tensor) -> Tensor:
        inverted, mask = inputs
        known = (inverted * scales.reshape((-1, 1, 1, 1, 1))).sum(axis=0)  # exact: one term is nonzero
        return x * mask + known * (1 - mask)


def _image(components, image) -> Float[Tensor, "b 3 h w"]:
    height, width = default_size(image, None, None, vae_scale_factor(components))
    return preprocess_image(image, height, width)


def _positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


_JIT = {}


def _unet_call(unet, mode: Optional[str]):
    """unet(x, t, encoder_hidden_states=...) as it runs in `mode` (compiled once per net in graph mode)."""
    def call(x, t, ctx):
        return unet(x, t, encoder_hidden_states=ctx)

    if resolve_mode(mode) != "graph":
        return call
    if unet not in _JIT:
        _JIT[unet] = ms.jit(call)
    return _JIT[unet]


@diffusers_names
def generate_mask(components, image=None, target_prompt=None, target_negative_prompt=None, *, source_prompt=None,
                  source_negative_prompt=None, target_prompt_embeds=None, target_negative_prompt_embeds=None,
                  source_prompt_embeds=None, source_negative_prompt_embeds=None, num_maps_per_mask: int = 10,
                  mask_encode_strength: float = 0.5, mask_thresholding_ratio: float = 3.0,
                  num_inference_steps: int = 50, guidance_scale: float = 7.5, output_type: str = "np",
                  seed: Optional[int] = None, noise=None, mode: Optional[str] = None, vae_dtype="float32"):
    """DiffEdit's mask (Couairon et al. 2022, sec. 3.1): (b, h/8, w/8) of 0 / 1 as float32 ("np") or PIL "L"
    images ("pil"). Guidance as diffusers 0.35.2 computes it, whose encode_prompt results are unpacked swapped
    (each map is eps_pos + s * (eps_neg - eps_pos)); with equal negative prompts the mask is the same as with the
    usual order. Random draws: the VAE posterior sample, then the noise added at mask_encode_strength."""
    if image is None:
        raise ValueError("generate_mask needs image=")
    maps = _positive_int("num_maps_per_mask", num_maps_per_mask)
    if not (isinstance(mask_thresholding_ratio, (int, float)) and mask_thresholding_ratio > 0):
        raise ValueError(f"mask_thresholding_ratio must be positive, got {mask_thresholding_ratio!r}")
    if not float(guidance_scale) > 1.0:
        raise ValueError(f"generate_mask needs guidance_scale > 1 (diffusers' fails without guidance), got "
                         f"{guidance_scale!r}")
    if output_type not in ("np", "pil"):
        raise ValueError(f"generate_mask: output_type must be 'np' or 'pil', got {output_type!r}")
    if (target_prompt is None and target_prompt_embeds is None) or (source_prompt is None
                                                                    and source_prompt_embeds is None):
        raise ValueError("generate_mask needs target_prompt (or target_prompt_embeds) and source_prompt (or "
                         "source_prompt_embeds)")
    noise_src = noise_source(seed, noise)
    common = dict(num_images_per_prompt=maps, guidance=True)
    tgt = encode_prompt(components, target_prompt, target_negative_prompt, prompt_embeds=target_prompt_embeds,
                        negative_prompt_embeds=target_negative_prompt_embeds, **common)
    src = encode_prompt(components, source_prompt, source_negative_prompt, prompt_embeds=source_prompt_embeds,
                        negative_prompt_embeds=source_negative_prompt_embeds, **common)
    batch = tgt.prompt_embeds.shape[0] // maps
    pixels = _image(components, image)
    pixels = Tensor(np.repeat(pixels.asnumpy(), maps, axis=0))
    smp = resolve_sampler(components.scheduler)
    schedule = make_schedule(smp, num_inference_steps, mask_encode_strength)
    z = tile_batch(encode_image(components, pixels, noise_src, vae_dtype), batch * maps)
    z = add_noise(schedule, z, noise_src.draw(tuple(z.shape)), 0)
    xin = mops.concat([z] * 4, axis=0) / Tensor(np.float32(schedule.input_div[0]))
    context = mops.concat([src.prompt_embeds, src.negative_prompt_embeds, tgt.prompt_embeds,
                           tgt.negative_prompt_embeds], axis=0)
    out = _unet_call(components.unet, mode)(xin.astype(components.unet.compute_dtype), schedule.timestep(0),
                                            context).astype(ms.float32)
    pos_src, neg_src, pos_tgt, neg_tgt = mops.split(out, z.shape[0], axis=0)
    eps_src = pos_src + float(guidance_scale) * (neg_src - pos_src)
    eps_tgt = pos_tgt + float(guidance_scale) * (neg_tgt - pos_tgt)
    diff = mops.abs(eps_tgt - eps_src)
    guide = diff.reshape((batch, maps) + tuple(diff.shape[1:])).mean(axis=(1, 2))
    clamp = guide.mean() * float(mask_thresholding_ratio)
    mask = (mops.clamp(guide, Tensor(np.float32(0.0)), clamp) / clamp).asnumpy()
    mask = np.where(mask <= 0.5, 0.0, 1.0).astype(np.float32)
    if output_type == "pil":
        import PIL.Image
        return [PIL.Image.fromarray((m * 255).astype(np.uint8), "L") for m in mask]
    return mask


@diffusers_names
def invert(components, prompt=None, image=None, negative_prompt=None, *, num_inference_steps: int = 50,
           inpaint_strength: float = 0.8, guidance_scale: float = 7.5, prompt_embeds=None,
           negative_prompt_embeds=None, lambda_auto_corr: float = 20.0, lambda_kl: float = 20.0,
           num_reg_steps: int = 0, num_auto_corr_rolls: int = 5, reg_shifts=None, seed: Optional[int] = None,
           noise=None, callback: Optional[Callable] = None, mode: Optional[str] = None,
           vae_dtype="float32") -> Float[Tensor, "b n c h w"]:
    """DDIM inversion of `image` under `prompt` (Song et al. 2021 eq. 12 run backwards; diffusers' DiffEdit
    invert): the latents after every inverse step, most-inverted first, (b, steps kept at inpaint_strength, c, h, w).
    Decode them with steps.decode if wanted. Random draws: the VAE posterior sample, then (num_reg_steps > 0,
    lambda_auto_corr > 0) the auto-correlation roll shifts of every step (diffedit_reg), or `reg_shifts`: recorded
    shifts (diffusers' torch.randint values, in draw order) instead."""
    if image is None:
        raise ValueError("invert needs image=")
    reg = _reg_args(num_reg_steps, num_auto_corr_rolls, lambda_auto_corr, lambda_kl)
    config = components.extra.get("inverse_scheduler")
    if not isinstance(config, dict):
        raise ValueError("invert: the pipeline has no inverse_scheduler (a DDIMInverseScheduler config)")
    if reg[0] and config.get("prediction_type", "epsilon") != "epsilon":
        raise ValueError(f"invert: num_reg_steps > 0 needs an epsilon-prediction inverse_scheduler, got "
                         f"prediction_type={config.get('prediction_type')!r}")
    if reg_shifts is not None and not reg[0]:
        raise ValueError("invert: reg_shifts given but num_reg_steps is 0")
    if not 0.0 < float(inpaint_strength) <= 1.0:
        raise ValueError(f"inpaint_strength must be in (0, 1], got {inpaint_strength!r}")
    guided = float(guidance_scale) > 1.0
    noise_src, tracker = noise_source(seed, noise), FiniteTracker()
    emb = encode_prompt(components, prompt, negative_prompt, guidance=guided, prompt_embeds=prompt_embeds,
                        negative_prompt_embeds=negative_prompt_embeds)
    x = tile_batch(encode_image(components, _image(components, image), noise_src, vae_dtype),
                   emb.prompt_embeds.shape[0])
    smp = resolve_sampler(config)
    steps = _positive_int("num_inference_steps", num_inference_steps)
    schedule = smp.schedule(steps)
    start = max(steps - min(int(steps * inpaint_strength), steps), 0)
    schedule = truncate(schedule, steps - start) if start else schedule
    guidance = CFG(guidance_scale) if guided else NoGuidance()
    if reg[0]:
        guidance = _regularised(guidance, reg, x.shape, len(schedule), noise_src, reg_shifts)
    model = compose(components.unet, NetInputs(encoder_hidden_states=cfg_batch(emb.negative_prompt_embeds,
                                                                               emb.prompt_embeds)),
                    guidance=guidance)
    kept = []
    for i, x in sample_steps(model, x, schedule, smp, noise_src, mode=mode, tracker=tracker):
        kept.append(x)
        if callback is not None:
            callback(i, x)
    tracker.check(x)
    return mops.stack(kept[::-1], axis=1)


def _reg_args(num_reg_steps, num_auto_corr_rolls, lambda_auto_corr, lambda_kl) -> tuple:
    for name, v in (("num_reg_steps", num_reg_steps), ("num_auto_corr_rolls", num_auto_corr_rolls)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"invert: {name} must be a non-negative integer, got {v!r}")
    for name, v in (("lambda_auto_corr", lambda_auto_corr), ("lambda_kl", lambda_kl)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not np.isfinite(v):
            raise ValueError(f"invert: {name} must be a finite number, got {v!r}")
    return int(num_reg_steps), int(num_auto_corr_rolls), float(lambda_auto_corr), float(lambda_kl)


def _regularised(guidance, reg: tuple, shape: tuple, calls: int, noise_src, reg_shifts) -> R.RegularisedGuidance:
    """The guidance with diffusers' noise regularisation; shifts drawn (after the VAE draw) or recorded."""
    steps, rolls, lam_ac, lam_kl = reg
    b, c, h = int(shape[0]), int(shape[1]), int(shape[2])
    shifts = None
    if lam_ac > 0 and rolls > 0:
        per_call = steps * rolls * len(R.shift_highs(b, c, h))
        shifts = (R.draw_shifts(noise_src, calls, steps, rolls, b, c, h) if reg_shifts is None
                  else R.check_shifts(reg_shifts, calls, per_call))
    elif reg_shifts is not None:
        raise ValueError("invert: reg_shifts given but no auto-correlation rolls are drawn (lambda_auto_corr <= 0 "
                         "or num_auto_corr_rolls 0)")
    return R.RegularisedGuidance(guidance, shifts, h, steps, lam_ac, lam_kl, rolls)


def _mask(mask_image, batch: int) -> Float[Tensor, "b 1 h w"]:
    """diffusers' DiffEdit preprocess_mask: PIL / numpy / Tensor mask(s) in [0, 1] -> binary (batch, 1, h, w)."""
    import PIL.Image

    items = mask_image if isinstance(mask_image, (list, tuple)) else [mask_image]
    arrays = []
    for m in items:
        if isinstance(m, PIL.Image.Image):
            m = np.asarray(m.convert("L")).astype(np.float32) / np.float32(255.0)
        arrays.append(np.asarray(m.asnumpy() if isinstance(m, Tensor) else m, np.float32))
    a = np.stack(arrays) if arrays[0].ndim < 3 else np.concatenate(arrays)
    if a.ndim == 2:
        a = a[None, None]
    elif a.ndim == 3:
        a = a[None] if a.shape[0] == 1 else a[:, None]
    if a.ndim != 4 or a.shape[1] != 1:
        raise ValueError(f"mask_image must be (h, w), (b, h, w) or (b, 1, h, w) at latent size, got {a.shape}")
    if batch > 1 and a.shape[0] == 1:
        a = np.concatenate([a] * batch)
    elif a.shape[0] != batch:
        raise ValueError(f"mask_image has batch {a.shape[0]}, the prompts {batch}")
    if a.min() < 0 or a.max() > 1:
        raise ValueError(f"mask_image must be in [0, 1], got values in [{a.min()}, {a.max()}]")
    return Tensor(np.where(a < 0.5, 0.0, 1.0).astype(np.float32))


@diffusers_names
def diffedit(components, prompt=None, mask_image=None, image_latents=None, negative_prompt=None, *,
             inpaint_strength: float = 0.8, num_inference_steps: int = 50, guidance_scale: float = 7.5,
             num_images_per_prompt: int = 1, eta: float = 0.0, output_type: str = "pil",
             seed: Optional[int] = None, sampler=None, noise=None, callback: Optional[Callable] = None,
             mode: Optional[str] = None, vae_dtype="float32", **conditioning):
    """The masked edit (diffusers' StableDiffusionDiffEditPipeline.__call__): denoise from image_latents[:, 0]
    toward `prompt`, keeping image_latents[:, i] outside mask_image after step i. mask_image: generate_mask's
    output (latent size); image_latents: invert's output at the same num_inference_steps / inpaint_strength."""
    if mask_image is None or image_latents is None:
        raise ValueError("diffedit needs mask_image= (generate_mask) and image_latents= (invert)")
    text, micro = split_conditioning("diffedit", conditioning)
    if micro != type(micro)():
        raise TypeError("diffedit() takes no SD-XL micro-conditioning keywords")
    g = float(guidance_scale)
    tracker = FiniteTracker()
    emb = text_conditioning(components, prompt, negative_prompt, text, guidance=g > 1.0,
                            num_images_per_prompt=num_images_per_prompt, tracker=tracker)
    batch = emb.prompt_embeds.shape[0] // num_images_per_prompt
    mask = tile_batch(_mask(mask_image, batch), batch * num_images_per_prompt)
    smp = resolve_sampler(components.scheduler, sampler, eta=eta)
    schedule = make_schedule(smp, num_inference_steps, inpaint_strength)
    n = len(schedule)
    inv = image_latents.asnumpy() if isinstance(image_latents, Tensor) else np.asarray(image_latents, np.float32)
    shape = (components.vae.config.latent_channels,) + tuple(mask.shape[2:])
    if tuple(inv.shape[-3:]) != shape:
        raise ValueError(f"image_latents: each latent must have shape {shape} (the mask's size), got "
                         f"{tuple(inv.shape[-3:])}")
    inv = inv.reshape((batch, n) + shape) if inv.ndim == 4 and inv.shape[0] == batch * n else inv
    if inv.ndim != 5 or inv.shape[:2] != (batch, n):
        raise ValueError(f"image_latents must be (batch {batch}, {n} steps, ...) as invert returns for "
                         f"num_inference_steps={num_inference_steps}, inpaint_strength={inpaint_strength}; got "
                         f"{inv.shape}")
    inv = np.repeat(inv.transpose(1, 0, 2, 3, 4), num_images_per_prompt, axis=1).astype(np.float32)
    x = Tensor(inv[0].copy())
    model = compose(components.unet, NetInputs(encoder_hidden_states=cfg_batch(emb.negative_prompt_embeds,
                                                                               emb.prompt_embeds)),
                    InvertedBlend(Tensor(inv), mask), guidance=CFG(g) if g > 1.0 else None)
    x = sample(model, x, schedule, smp, noise_source(seed, noise), callback, mode=mode, tracker=tracker)
    return finish(components, x, output_type, vae_dtype, tracker)


def _cli(args, components, kwargs: dict) -> tuple:
    """`msdiff generate` runs the three stages in a row: mask (--source-prompt vs --prompt), inversion of --image
    under --source-prompt at --strength, edit."""

    def run(components, image=None, source_prompt=None, callback=None, num_reg_steps=None, **kw):
        steps, strength = kw.get("num_inference_steps", 50), kw.get("inpaint_strength", 0.8)
        common = dict(num_inference_steps=steps, seed=kw.get("seed"), mode=kw.get("mode"))
        if kw.get("guidance_scale") is not None:
            common["guidance_scale"] = kw["guidance_scale"]
        mask = generate_mask(components, image, kw.get("prompt"), source_prompt=source_prompt, **common)
        inv = invert(components, source_prompt, image, inpaint_strength=strength, num_reg_steps=num_reg_steps or 0,
                     **common)
        return diffedit(components, mask_image=mask, image_latents=inv, callback=callback, **kw)

    return run, kwargs


FAMILIES = (
    Family("diffedit", diffedit, ("StableDiffusionDiffEditPipeline",),
           {"prompt": "prompt", "negative_prompt": "negative_prompt", "guidance": "guidance_scale",
            "sampler": "sampler", "strength": "inpaint_strength", "image": "image",
            "source_prompt": "source_prompt", "num_reg_steps": "num_reg_steps"}, ("image", "source_prompt"),
           steps=50, prepare=_cli,
           cli_options=(("--source-prompt", dict(default=None, help="DiffEdit: what --image shows (the edit mask "
                                                                     "is where it and --prompt disagree)")),
                        ("--num-reg-steps", dict(type=int, default=None, help="DiffEdit: rounds of the inversion's "
                                                 "noise regularisation (default 0, diffusers' invert)"))),
           help="DiffEdit: edit --image toward --prompt where it differs from --source-prompt (both required)"),
)
