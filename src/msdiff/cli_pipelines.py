"""`msdiff generate`: the family declared for model_index.json's pipeline class (`recipes.family_of`) runs; an
option it does not take, a missing required option or an unknown class is a one-line error, never a fallback.

Options map onto recipe keywords by each family's `options` table; pipeline-specific options default to None on
the parser, so "given" means "not None".
"""
import sys
import time
from pathlib import Path
from typing import Optional

# families whose --image may be given once per net (several ControlNets or adapters)
_SEVERAL_IMAGES = ("controlnet", "t2i_adapter")
# options every family takes (they are not in the families' tables)
COMMON = ("model", "steps", "seed", "out", "mode", "dtype")


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


def flag(dest: str) -> str:
    """The command-line spelling of a parser dest."""
    return "--" + dest.replace("_", "-")


def specific_options() -> tuple:
    """Every pipeline-specific option dest some family takes."""
    from .recipes import families
    dests = []
    for fam in families():
        for dest in tuple(fam.options) + tuple(fam.required):
            if dest not in dests:
                dests.append(dest)
    return tuple(dests)


def sampler_name(sampler):
    """A sampler option as its diffusers scheduler class name (one naming scheme in the metadata)."""
    if not isinstance(sampler, str):
        return sampler
    from .samplers import sampler_names
    key = sampler.lower().replace("_", "").replace("-", "").replace(" ", "")
    return sampler_names().get(key, sampler)


def fp32_plan(args) -> dict:
    """--fp32-blocks COMPONENT:BLOCK[,BLOCK...] (repeatable) as load_pipeline's fp32_blocks."""
    plan = {}
    for item in getattr(args, "fp32_blocks", None) or ():
        component, sep, blocks = item.partition(":")
        if not sep or not component or not blocks:
            raise ValueError(f"--fp32-blocks must look like unet:down_blocks.0,mid_block, got {item!r}")
        plan.setdefault(component, []).extend(b for b in blocks.split(",") if b)
    return plan


def _dtype(args) -> str:
    return "float16" if args.dtype == "fp16" else "float32"


def pipeline_class(args):
    """model_index.json's _class_name of --model (None without --model: the bundled digit model)."""
    if args.model is None:
        return None
    from .io import read_config, resolve_folder
    return read_config(resolve_folder(args.model), "model_index.json").get("_class_name") or "(none)"


def check_options(args, fam, class_name) -> None:
    """ValueError for an option the family does not take or a required one missing."""
    what = class_name or "the bundled digit model (no --model)"
    for dest in specific_options():
        if getattr(args, dest, None) is not None and dest not in fam.options and dest not in fam.required:
            allowed = " ".join(flag(d) for d in fam.options) or "none"
            raise ValueError(f"{flag(dest)} does not apply to {what} (its options: {allowed})")
    for dest in fam.required:
        if getattr(args, dest, None) is None:
            raise ValueError(f"{what} needs {flag(dest)}")
    images = getattr(args, "image", None)
    if isinstance(images, (list, tuple)) and len(images) > 1 and fam.name not in _SEVERAL_IMAGES:
        raise ValueError(f"--image given {len(images)} times; {what} takes one")
    for dest in ("image", "mask", "control_image"):
        value = getattr(args, dest, None)
        for path in value if isinstance(value, (list, tuple)) else [value]:
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{flag(dest)} {path!r}: no such file")


def recipe_kwargs(args, fam) -> dict:
    """The recipe keywords of the given options (by the family's table), steps, seed and mode."""
    kwargs = {}
    for dest, keyword in fam.options.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if keyword == "size":
            kwargs["width"], kwargs["height"] = value
        elif dest == "image" and isinstance(value, (list, tuple)):
            kwargs[keyword] = value[0] if len(value) == 1 else list(value)
        else:
            kwargs[keyword] = value
    if args.steps is not None or fam.steps is not None:
        kwargs["num_inference_steps"] = args.steps if args.steps is not None else fam.steps
    if fam.sampler is not None:
        kwargs.setdefault("sampler", fam.sampler)
    kwargs.update(seed=args.seed, mode=args.mode)
    return kwargs


def _components_key(args) -> tuple:
    """What the loaded components depend on: the same key reuses them (a --prompts run loads the model once)."""
    return (str(args.model), args.dtype, tuple(getattr(args, "fp32_blocks", None) or ()),
            tuple(getattr(args, "lora", None) or ()), tuple(getattr(args, "embedding", None) or ()),
            getattr(args, "ip_adapter", None), getattr(args, "ip_adapter_scale", None))


def load_components(args, class_name, cache: Optional[dict] = None):
    """The pipeline's components with --lora / --embedding / --ip-adapter applied, from `cache` when the key
    matches; (components, freshly loaded)."""
    import msdiff
    key = _components_key(args)
    if cache is not None and key in cache:
        return cache[key], False
    if class_name is None:
        if getattr(args, "lora", None) or getattr(args, "embedding", None):
            raise ValueError("--lora / --embedding need --model (a Stable Diffusion pipeline)")
        return None, True
    components = msdiff.load_pipeline(args.model, dtype=_dtype(args), fp32_blocks=fp32_plan(args))
    if getattr(args, "lora", None) or getattr(args, "embedding", None):
        from .io.lora import apply_addons, parse_lora_option
        apply_addons(components, loras=[parse_lora_option(x) for x in args.lora or ()], embeddings=args.embedding or ())
    if cache is not None:
        cache.clear()  # one model at a time
        cache[key] = components
    return components, True


def generate(args, cache: Optional[dict] = None) -> dict:
    """Run the recipe of args.model's pipeline class and return {"image", "steps", "sampler", "first_step_s",
    "model", "pipeline_class", "class_label"}. `cache` (a dict kept by the caller) keeps the loaded components
    for the next call with the same model and add-ons."""
    from .recipes import family_of
    from .settings import progress_bar_config, resolve_mode
    args.mode = resolve_mode(args.mode)
    class_name = pipeline_class(args)
    fam = family_of(class_name)
    check_options(args, fam, class_name)
    components, fresh = load_components(args, class_name, cache)
    if getattr(args, "verbose", False) and components is not None and fresh:
        from .diagnose import format_plans
        print(format_plans(components), file=sys.stderr)
    kwargs = recipe_kwargs(args, fam)
    recipe = fam.recipe
    if fam.prepare is not None:
        recipe, kwargs = fam.prepare(args, components, kwargs)
    if getattr(args, "ip_adapter", None) or getattr(args, "ip_image", None):
        from .recipes.ip_adapter import cli_ip_adapter
        kwargs["ip_adapter_image"] = cli_ip_adapter(components, args.ip_adapter, args.ip_image,
                                                    1.0 if args.ip_adapter_scale is None else args.ip_adapter_scale,
                                                    load=fresh)
    recipe = getattr(sys.modules.get(recipe.__module__), recipe.__name__, recipe)  # late-bound: patchable
    if class_name is None:
        kwargs["dtype"] = _dtype(args)
    steps = kwargs.get("num_inference_steps")
    progress = Progress(steps or 1, Path(str(args.model or "digits")).name)
    start = time.perf_counter()
    try:
        with progress_bar_config(disable=True):  # this command's own bar (opened at the first step) instead
            images = recipe(components, callback=progress, **kwargs)
    finally:
        progress.close()
    if class_name is None:
        print(f"generated in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    sampler = sampler_name(kwargs.get("sampler")) or ((components.scheduler or {}).get("_class_name")
                                                      if components else None)
    return {"image": images[0], "steps": steps, "sampler": sampler, "first_step_s": progress.first_step_s,
            "model": str(args.model) if args.model else "msdiff bundled digits (msdiff/assets/digits)",
            "pipeline_class": class_name, "class_label": getattr(args, "class_label", None)}
