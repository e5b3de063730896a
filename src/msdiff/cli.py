"""`msdiff generate | train | support`: the command line over the recipes."""
import argparse
import sys
from pathlib import Path

_USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, OSError)


_GENERATE_HELP = """Generate one image with the recipe of the --model folder's pipeline class (model_index.json):
  StableDiffusion*/LatentConsistencyModel*  text-to-image; with --image image-to-image; with --mask inpainting
  StableDiffusion[XL]InpaintPipeline        inpainting: --image and --mask required
  *Img2ImgPipeline (SD, SD-XL, LCM)         image-to-image: --image required
  StableDiffusionInstructPix2PixPipeline    edit --image (required) following --prompt; --image-guidance (steps 100)
  StableDiffusion[XL]ControlNetPipeline     --image is the control image (required); --controlnet-scale
  StableDiffusion[XL]AdapterPipeline        --image is the condition image (required); --adapter-scale
  DDPMPipeline / DDIMPipeline               unconditional (--class-label if class-conditional; steps 1000 / 50)
  ConsistencyModelPipeline                  consistency sampling (steps 1, --class-label)
  DiTPipeline                               --class-label required; --guidance (default 4), --sampler (steps 50)
  PixArtAlphaPipeline                       --prompt, --guidance (default 4.5), --size (exact: no binning) (steps 20)
  LDMTextToImagePipeline                    --prompt, --guidance, --size (steps 50)
  LDMSuperResolutionPipeline                --image required (steps 100)
An option a pipeline does not take is an error. Without --model: the bundled digit model's grid."""


def _size(text: str) -> tuple:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 512x512, got {text!r}") from None
    return w, h


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="msdiff", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", description=_GENERATE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="generate images (no --model: the bundled digit model)")
    g.add_argument("--model", help="diffusers pipeline folder or cached hub repo id")
    g.add_argument("--prompt", default=None, help="SD, LDM text-to-image (default: empty)")
    g.add_argument("--negative-prompt", default=None, help="SD")
    g.add_argument("--steps", type=int, default=None, help="sampling steps (default: the pipeline's)")
    g.add_argument("--guidance", type=float, default=None,
                   help="SD (default 7.5), LDM text-to-image (default 1), DiT (default 4)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--sampler", default=None,
                   help="SD, DDPM/DDIM, DiT: sampler name (default: the checkpoint's scheduler)")
    g.add_argument("--size", type=_size, default=None, help="SD, LDM text-to-image: WxH (default: the model's)")
    g.add_argument("--image", default=None, help="SD image-to-image / inpainting input; LDM super-resolution input")
    g.add_argument("--strength", type=float, default=None, help="SD image-to-image / inpainting (default 0.8)")
    g.add_argument("--mask", default=None, help="SD inpainting mask (white = repaint)")
    g.add_argument("--image-guidance", type=float, default=None, help="InstructPix2Pix image guidance (default 1.5)")
    g.add_argument("--controlnet-scale", type=float, default=None, help="ControlNet conditioning scale (default 1)")
    g.add_argument("--adapter-scale", type=float, default=None, help="T2I-Adapter conditioning scale (default 1)")
    g.add_argument("--class-label", type=int, default=None, help="class-conditional DDPM/DDIM and DiT (required), "
                   "consistency (default: drawn from --seed)")
    g.add_argument("--per-class", type=int, default=None, help="bundled digit model: images per class row (default 8)")
    g.add_argument("--out", default="msdiff.png")
    g.add_argument("--mode", choices=("pynative", "graph"), default="graph",
                   help="graph compiles the denoising step with mindspore.jit (default)")
    g.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32")

    t = sub.add_parser("train", help="train (or resume) the class-conditional digit model")
    t.add_argument("--out", required=True, help="checkpoint folder (diffusers layout; resumed if it exists)")
    t.add_argument("--steps", type=int, default=2000, help="stop after this many steps (a rerun resumes)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--export", default=None, help="also copy the trained pipeline folder here")

    s = sub.add_parser("support", help="measure the support matrix and write docs/SUPPORT.md (in a checkout)",
                       description="Re-measure docs/SUPPORT.md against the diffusers fixtures of a checkout of the "
                       "msdiff repository (tools/support/ and tests/fixtures/; an installed package has neither).")
    s.add_argument("--repo", default=None, help="the checkout (default: the one msdiff is installed from, else the "
                   "current folder)")
    s.add_argument("--out", default=None, help="default: REPO/docs/SUPPORT.md")
    s.add_argument("--only", nargs="*", default=None, help="row names to re-measure (see --list)")
    s.add_argument("--list", action="store_true", help="print the row names and exit")
    return p


def _png_info(meta: dict):
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    for key, value in meta.items():
        if value is not None:
            info.add_text(f"msdiff:{key}", str(value))
    return info


def _generate(args) -> int:
    from .cli_pipelines import generate
    result = generate(args)
    if args.mode == "graph" and result["first_step_s"] is not None:
        print(f"graph compile + first step: {result['first_step_s']:.1f} s", file=sys.stderr)
    meta = {"prompt": args.prompt or None, "negative_prompt": args.negative_prompt, "seed": args.seed,
            "steps": result["steps"], "sampler": result["sampler"], "model": result["model"],
            "mode": args.mode, "dtype": args.dtype, "class_label": result.get("class_label")}
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


def _checkout(repo) -> Path:
    """The msdiff checkout holding tools/support and tests/fixtures (FileNotFoundError naming what is missing)."""
    candidates = [Path(repo)] if repo else [Path(__file__).resolve().parents[2], Path.cwd()]
    for root in candidates:
        if (root / "tools" / "support" / "__init__.py").is_file() and (root / "tests" / "fixtures").is_dir():
            return root
    raise FileNotFoundError(f"msdiff support needs a checkout of the msdiff repository (tools/support/ and "
                            f"tests/fixtures/), none at {', '.join(str(c) for c in candidates)}: run it inside a "
                            f"clone or pass --repo DIR")


def _support(args) -> int:
    root = _checkout(args.repo)
    sys.path.insert(0, str(root))
    import tools.support as support
    if args.list:
        for row in support.rows(root / "tests" / "fixtures"):
            print(row.name)
        return 0
    out = Path(args.out) if args.out else root / "docs" / "SUPPORT.md"
    path = support.write_support(root / "tests" / "fixtures", out, only=args.only)
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
