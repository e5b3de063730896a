"""`msdiff generate`: pick the recipe from model_index.json's pipeline class, refuse options it does not take, run it.

Each runner takes the parsed arguments and returns {"image", "steps", "sampler", "first_step_s"} plus any extra
PNG metadata. Pipeline-specific options default to None on the parser, so "given" means "not None".
"""
import sys
import time
from pathlib import Path

# parser dests whose meaning depends on the pipeline; every other option (--model, --steps, --seed, --out,
# --mode, --dtype) applies to all of them
_SPECIFIC = ("prompt", "negative_prompt", "guidance", "sampler", "size", "image", "strength", "mask", "class_label",
             "per_class", "image_guidance", "controlnet_scale", "adapter_scale")
_SD_PREFIXES = ("StableDiffusion", "LatentConsistencyModel")


class Progress:
    """A tqdm bar over denoising steps, opened at the first step (so input errors print alone).

    `total` is the expected number of steps; samplers that call the net more often than the requested step
    count (PNDM's warm-up, Heun's second order) grow it, so the bar always ends at n/n.
    """

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.bar = total, desc, None
        self.start = time.perf_counter()
        self.first_step_s = None

    def __call__(self, step, latents):
        if self.bar is None:
            from tqdm import tqdm
            self.first_step_s = time.perf_counter() - self.start
            self.bar = tqdm(total=self.total, desc=self.desc, unit="step")
        if self.bar.n + 1 > self.bar.total:
            self.bar.total = self.bar.n + 1
        self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _dtype(args) -> str:
    return "float16" if args.dtype == "fp16" else "float32"


def _first_image(recipe, components, total: int, args, *positional, **kwargs) -> tuple:
    """(first PIL image, seconds to the first step) of recipe(components, ...) under a progress bar."""
    progress = Progress(total, Path(str(args.model)).name)
    try:
        images = recipe(components, *positional, callback=progress, **kwargs)
    finally:
        progress.close()
    return images[0], progress.first_step_s


def _class_labels(args, unet) -> "list | None":
    n = unet.config.num_class_embeds
    if args.class_label is None:
        return None
    if not n:
        raise ValueError("--class-label given but this model is not class-conditional (num_class_embeds is null)")
    if not 0 <= args.class_label < n:
        raise ValueError(f"--class-label must lie in [0, {n}), got {args.class_label}")
    return [args.class_label]


def _digits(args, components=None) -> dict:
    from .recipes.unconditional import digit_grid, load_digits_model
    steps = args.steps or 20
    per_class = 8 if args.per_class is None else args.per_class
    start = time.perf_counter()
    grid = digit_grid(load_digits_model(_dtype(args)), per_class=per_class, num_inference_steps=steps,
                      seed=args.seed, mode=args.mode, progress=True)
    print(f"generated in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return {"image": grid, "model": "msdiff bundled digits (msdiff/assets/digits)", "steps": steps,
            "sampler": "DDIM", "first_step_s": None}


def _sd(args, components) -> dict:
    from . import recipes
    if args.mask and not args.image:
        raise ValueError("--mask needs --image (the picture to inpaint)")
    steps = args.steps or 30
    strength = 0.8 if args.strength is None else args.strength
    kwargs = dict(prompt=args.prompt or "", negative_prompt=args.negative_prompt, num_inference_steps=steps,
                  guidance_scale=7.5 if args.guidance is None else args.guidance, seed=args.seed,
                  sampler=args.sampler, mode=args.mode)
    if args.size:
        kwargs["width"], kwargs["height"] = args.size
    if args.image:
        kwargs.update(image=args.image, strength=strength)
        recipe = recipes.inpaint if args.mask else recipes.image_to_image
        if args.mask:
            kwargs["mask_image"] = args.mask
        total = max(1, int(steps * strength))
    else:
        recipe, total = recipes.text_to_image, steps
    image, first = _first_image(recipe, components, total, args, **kwargs)
    return {"image": image, "steps": steps, "first_step_s": first,
            "sampler": args.sampler or (components.scheduler or {}).get("_class_name")}


def _unconditional(args, components) -> dict:
    from .recipes.unconditional import unconditional
    ddim = components.pipeline_class == "DDIMPipeline"  # diffusers' DDIMPipeline always samples with DDIM
    steps = args.steps or (50 if ddim else 1000)
    labels = _class_labels(args, components.unet)
    if components.unet.config.num_class_embeds and labels is None:
        raise ValueError(f"this model is class-conditional: pass --class-label in "
                         f"[0, {components.unet.config.num_class_embeds})")
    sampler = args.sampler or ("ddim" if ddim else None)
    image, first = _first_image(unconditional, components, steps, args, num_inference_steps=steps,
                                class_labels=labels, seed=args.seed, sampler=sampler, mode=args.mode)
    name = {None: (components.scheduler or {}).get("_class_name"), "ddim": "DDIMScheduler"}.get(sampler, sampler)
    return {"image": image, "steps": steps, "sampler": name, "first_step_s": first, "class_label": args.class_label}


def _consistency(args, components) -> dict:
    from .recipes.consistency import consistency
    steps = args.steps or 1
    image, first = _first_image(consistency, components, steps, args, num_inference_steps=steps,
                                class_labels=_class_labels(args, components.unet), seed=args.seed, mode=args.mode)
    return {"image": image, "steps": steps, "sampler": (components.scheduler or {}).get("_class_name"),
            "first_step_s": first, "class_label": args.class_label}


def _ldm_text_to_image(args, components) -> dict:
    from .recipes.ldm import ldm_text_to_image
    steps = args.steps or 50
    if args.size:
        width, height = args.size
    else:  # diffusers: unet sample_size times the VQ-VAE's downscale factor
        vq = components.extra["vqvae"].config
        width = height = components.unet.config.sample_size * 2 ** (len(vq.block_out_channels) - 1)
    guidance = 1.0 if args.guidance is None else args.guidance
    image, first = _first_image(ldm_text_to_image, components, steps, args, args.prompt or "",
                                num_inference_steps=steps, guidance_scale=guidance, height=height, width=width,
                                seed=args.seed, mode=args.mode)
    return {"image": image, "steps": steps, "sampler": (components.scheduler or {}).get("_class_name"),
            "first_step_s": first}


def _ldm_super_resolution(args, components) -> dict:
    from .recipes.ldm import ldm_super_resolution
    steps = args.steps or 100
    image, first = _first_image(ldm_super_resolution, components, steps, args, args.image,
                                num_inference_steps=steps, seed=args.seed, mode=args.mode)
    return {"image": image, "steps": steps, "sampler": (components.scheduler or {}).get("_class_name"),
            "first_step_s": first}


def _instruct_pix2pix(args, components) -> dict:
    from .recipes.instruct_pix2pix import instruct_pix2pix
    steps = args.steps or 100
    kwargs = dict(negative_prompt=args.negative_prompt, num_inference_steps=steps,
                  guidance_scale=7.5 if args.guidance is None else args.guidance,
                  image_guidance_scale=1.5 if args.image_guidance is None else args.image_guidance,
                  seed=args.seed, sampler=args.sampler, mode=args.mode)
    image, first = _first_image(instruct_pix2pix, components, steps, args, args.prompt or "", args.image, **kwargs)
    return {"image": image, "steps": steps, "first_step_s": first,
            "sampler": args.sampler or (components.scheduler or {}).get("_class_name")}


def _conditioned(name: str, scale_option: str, scale_kwarg: str):
    """Runner of a text-to-image recipe steered by a condition image (--image) and its scale option:
    ControlNet and T2I-Adapter (recipe `msdiff.recipes.<name>.<name>`)."""
    def run(args, components) -> dict:
        import importlib
        recipe = getattr(importlib.import_module(f"msdiff.recipes.{name}"), name)
        steps = args.steps or 30
        width, height = args.size or (None, None)
        scale = getattr(args, scale_option)
        image, first = _first_image(recipe, components, steps, args, args.prompt or "", args.image,
                                    negative_prompt=args.negative_prompt, num_inference_steps=steps,
                                    guidance_scale=args.guidance, height=height, width=width,
                                    **{scale_kwarg: 1.0 if scale is None else scale}, seed=args.seed,
                                    sampler=args.sampler, mode=args.mode)
        return {"image": image, "steps": steps, "first_step_s": first,
                "sampler": args.sampler or (components.scheduler or {}).get("_class_name")}
    return run


def _dit(args, components) -> dict:
    from .recipes.dit import dit
    steps = args.steps or 50
    guidance = 4.0 if args.guidance is None else args.guidance
    image, first = _first_image(dit, components, steps, args, [args.class_label], guidance_scale=guidance,
                                num_inference_steps=steps, seed=args.seed, sampler=args.sampler, mode=args.mode)
    return {"image": image, "steps": steps, "first_step_s": first, "class_label": args.class_label,
            "sampler": args.sampler or (components.scheduler or {}).get("_class_name")}


def _pixart(args, components) -> dict:
    from .recipes.pixart import pixart
    steps = args.steps or 20
    kwargs = dict(negative_prompt=args.negative_prompt or "", num_inference_steps=steps,
                  guidance_scale=4.5 if args.guidance is None else args.guidance, seed=args.seed,
                  sampler=args.sampler, mode=args.mode)
    if args.size:  # an explicit size runs as given (diffusers would bin it to the nearest trained aspect ratio)
        kwargs["width"], kwargs["height"] = args.size
        kwargs["use_resolution_binning"] = False
    image, first = _first_image(pixart, components, steps, args, args.prompt or "", **kwargs)
    return {"image": image, "steps": steps, "first_step_s": first,
            "sampler": args.sampler or (components.scheduler or {}).get("_class_name")}


# pipeline class -> (runner, the pipeline-specific options it takes, the ones it requires)
_SD_OPTIONS = ("prompt", "negative_prompt", "guidance", "sampler", "size", "image", "strength", "mask")
_SD = (_sd, _SD_OPTIONS, ())
_SD_INPAINT = (_sd, _SD_OPTIONS, ("image", "mask"))  # 9-channel inpainting UNets need both
_SD_IMG2IMG = (_sd, _SD_OPTIONS, ("image",))
_CONDITIONED_OPTIONS = ("prompt", "negative_prompt", "guidance", "sampler", "size", "image")
_CONTROLNET = (_conditioned("controlnet", "controlnet_scale", "controlnet_conditioning_scale"),
               _CONDITIONED_OPTIONS + ("controlnet_scale",), ("image",))
_T2I_ADAPTER = (_conditioned("t2i_adapter", "adapter_scale", "adapter_conditioning_scale"),
                _CONDITIONED_OPTIONS + ("adapter_scale",), ("image",))
_RUNNERS = {
    "StableDiffusionAdapterPipeline": _T2I_ADAPTER,
    "StableDiffusionXLAdapterPipeline": _T2I_ADAPTER,
    "StableDiffusionControlNetPipeline": _CONTROLNET,
    "StableDiffusionXLControlNetPipeline": _CONTROLNET,
    "StableDiffusionImg2ImgPipeline": _SD_IMG2IMG,
    "StableDiffusionXLImg2ImgPipeline": _SD_IMG2IMG,
    "LatentConsistencyModelImg2ImgPipeline": _SD_IMG2IMG,
    "StableDiffusionInpaintPipeline": _SD_INPAINT,
    "StableDiffusionXLInpaintPipeline": _SD_INPAINT,
    "StableDiffusionInstructPix2PixPipeline": (_instruct_pix2pix, ("prompt", "negative_prompt", "guidance",
                                                                   "image_guidance", "sampler", "image"), ("image",)),
    None: (_digits, ("per_class",), ()),
    "DDPMPipeline": (_unconditional, ("sampler", "class_label"), ()),
    "DDIMPipeline": (_unconditional, ("sampler", "class_label"), ()),
    "ConsistencyModelPipeline": (_consistency, ("class_label",), ()),
    "DiTPipeline": (_dit, ("class_label", "guidance", "sampler"), ("class_label",)),
    "PixArtAlphaPipeline": (_pixart, ("prompt", "negative_prompt", "guidance", "sampler", "size"), ()),
    "LDMTextToImagePipeline": (_ldm_text_to_image, ("prompt", "guidance", "size"), ()),
    "LDMSuperResolutionPipeline": (_ldm_super_resolution, ("image",), ("image",)),
}
SUPPORTED = ("StableDiffusion*Pipeline", "LatentConsistencyModel*Pipeline") + tuple(c for c in _RUNNERS if c)


def _runner(class_name):
    if class_name in _RUNNERS:
        return _RUNNERS[class_name]
    if isinstance(class_name, str) and class_name.startswith(_SD_PREFIXES):
        return _SD
    raise ValueError(f"pipeline class {class_name!r} is not supported by msdiff generate; supported: "
                     f"{', '.join(SUPPORTED)}")


def generate(args) -> dict:
    """Run the recipe of args.model's pipeline class (no model: the bundled digit grid) and return its result."""
    import msdiff
    from .io import read_config, resolve_folder
    class_name = None
    if args.model is not None:
        class_name = read_config(resolve_folder(args.model), "model_index.json").get("_class_name") or "(none)"
    run, takes, needs = _runner(class_name)
    what = class_name or "the bundled digit model (no --model)"
    for dest in _SPECIFIC:
        if getattr(args, dest) is not None and dest not in takes:
            allowed = " ".join(_flag(d) for d in takes) or "none"
            raise ValueError(f"{_flag(dest)} does not apply to {what} (its options: {allowed})")
    for dest in needs:
        if getattr(args, dest) is None:
            raise ValueError(f"{what} needs {_flag(dest)}")
    if class_name is None:
        return run(args)
    components = msdiff.load_pipeline(args.model, dtype=_dtype(args))
    return dict(run(args, components), model=str(args.model))
