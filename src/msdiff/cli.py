"""`msdiff generate | train | support`: the command line over the recipes."""
import argparse
import sys
import time
from pathlib import Path

_USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, OSError)


def _size(text: str) -> tuple:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 512x512, got {text!r}") from None
    return w, h


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="msdiff", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate images (no --model: the bundled digit model)")
    g.add_argument("--model", help="diffusers pipeline folder or cached hub repo id")
    g.add_argument("--prompt", default="")
    g.add_argument("--negative-prompt", default=None)
    g.add_argument("--steps", type=int, default=None, help="sampling steps")
    g.add_argument("--guidance", type=float, default=7.5)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--sampler", default=None, help="sampler name (default: the checkpoint's scheduler)")
    g.add_argument("--size", type=_size, default=None, help="WxH (default: the model's native size)")
    g.add_argument("--image", default=None, help="input image for image-to-image / inpainting")
    g.add_argument("--strength", type=float, default=0.8)
    g.add_argument("--mask", default=None, help="inpainting mask (white = repaint)")
    g.add_argument("--per-class", type=int, default=8, help="digit model: images per class row")
    g.add_argument("--out", default="msdiff.png")
    g.add_argument("--mode", choices=("pynative", "graph"), default="graph",
                   help="graph compiles the denoising step with mindspore.jit (default)")
    g.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32")

    t = sub.add_parser("train", help="train (or resume) the class-conditional digit model")
    t.add_argument("--out", required=True, help="checkpoint folder (diffusers layout; resumed if it exists)")
    t.add_argument("--steps", type=int, default=2000, help="stop after this many steps (a rerun resumes)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--export", default=None, help="also copy the trained pipeline folder here")

    s = sub.add_parser("support", help="measure the support matrix and write docs/SUPPORT.md")
    s.add_argument("--fixtures", default="tests/fixtures")
    s.add_argument("--out", default="docs/SUPPORT.md")
    s.add_argument("--only", nargs="*", default=None, help="row names to run")
    return p


class _Progress:
    """A tqdm bar over denoising steps, opened at the first step (so input errors print alone)."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.bar = total, desc, None
        self.start = time.perf_counter()
        self.first_step_s = None

    def __call__(self, step, latents):
        if self.bar is None:
            from tqdm import tqdm
            self.first_step_s = time.perf_counter() - self.start
            self.bar = tqdm(total=self.total, desc=self.desc, unit="step")
        self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _png_info(meta: dict):
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    for key, value in meta.items():
        if value is not None:
            info.add_text(f"msdiff:{key}", str(value))
    return info


def _generate_digits(args) -> dict:
    from .recipes.unconditional import digit_grid, load_digits_model
    dtype = "float16" if args.dtype == "fp16" else "float32"
    steps = args.steps or 20
    start = time.perf_counter()
    grid = digit_grid(load_digits_model(dtype), per_class=args.per_class, num_inference_steps=steps,
                      seed=args.seed, mode=args.mode, progress=True)
    print(f"generated in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return {"image": grid, "model": "msdiff bundled digits (msdiff/assets/digits)", "steps": steps,
            "sampler": "DDIM", "first_step_s": None}


def _generate_sd(args) -> dict:
    import msdiff
    from . import recipes
    dtype = "float16" if args.dtype == "fp16" else "float32"
    components = msdiff.load_pipeline(args.model, dtype=dtype)
    if args.mask and not args.image:
        raise ValueError("--mask needs --image (the picture to inpaint)")
    steps = args.steps or 30
    kwargs = dict(prompt=args.prompt, negative_prompt=args.negative_prompt, num_inference_steps=steps,
                  guidance_scale=args.guidance, seed=args.seed, sampler=args.sampler, mode=args.mode)
    if args.size:
        kwargs["width"], kwargs["height"] = args.size
    if args.image:
        kwargs.update(image=args.image, strength=args.strength)
        recipe = recipes.inpaint if args.mask else recipes.image_to_image
        if args.mask:
            kwargs["mask_image"] = args.mask
        total = max(1, int(steps * args.strength))
    else:
        recipe, total = recipes.text_to_image, steps
    progress = _Progress(total, Path(str(args.model)).name)
    try:
        images = recipe(components, callback=progress, **kwargs)
    finally:
        progress.close()
    return {"image": images[0], "model": str(args.model), "steps": steps, "sampler": args.sampler or
            (components.scheduler or {}).get("_class_name"), "first_step_s": progress.first_step_s}


def _generate(args) -> int:
    result = _generate_digits(args) if args.model is None else _generate_sd(args)
    if args.mode == "graph" and result["first_step_s"] is not None:
        print(f"graph compile + first step: {result['first_step_s']:.1f} s", file=sys.stderr)
    meta = {"prompt": args.prompt or None, "negative_prompt": args.negative_prompt, "seed": args.seed,
            "steps": result["steps"], "sampler": result["sampler"], "model": result["model"],
            "mode": args.mode, "dtype": args.dtype}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result["image"].save(out, pnginfo=_png_info(meta))
    print(f"wrote {out}")
    return 0


def _train(args) -> int:
    from .recipes.digits import train_digits
    folder = train_digits(args.out, steps=args.steps, seed=args.seed, export=args.export)
    print(f"saved {folder}")
    return 0


def _support(args) -> int:
    from .support import write_support
    path = write_support(Path(args.fixtures), Path(args.out), only=args.only)
    print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    """Entry point of the `msdiff` command."""
    args = _parser().parse_args(argv)
    run = {"generate": _generate, "train": _train, "support": _support}[args.command]
    try:
        return run(args)
    except _USER_ERRORS as e:
        print(f"msdiff {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
