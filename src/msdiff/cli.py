"""`msdiff generate | train | support`: the command line over the recipes."""
import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

_USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, OSError)


def _generate_help() -> str:
    """`msdiff generate`'s description: one line per family, from the recipes' declarations."""
    from .recipes import families
    lines = ["Generate one image with the recipe of the --model folder's pipeline class (model_index.json):"]
    for fam in families():
        names = ", ".join(c for c in fam.pipelines if c) or "(no --model)"
        lines.append(f"  {names}\n      {fam.help}")
    lines.append("An option a pipeline does not take is an error; so is a pipeline class msdiff does not implement.")
    return "\n".join(lines)


def _size(text: str) -> tuple:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 512x512, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"--size must be positive (WxH, e.g. 512x512), got {text!r}")
    return w, h


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _strength(text: str) -> float:
    value = _finite(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"--strength must be in (0, 1], got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"--seed must be a non-negative integer, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    from .recipes import families
    p = argparse.ArgumentParser(prog="msdiff", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", description=_generate_help(), formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="generate images (no --model: the bundled digit model)")
    g.add_argument("--model", help="diffusers pipeline folder or cached hub repo id")
    g.add_argument("--prompt", default=None, help="SD, LDM text-to-image (default: empty)")
    g.add_argument("--negative-prompt", default=None, help="SD")
    g.add_argument("--steps", type=_positive_int, default=None, help="sampling steps (default: the pipeline's)")
    g.add_argument("--guidance", type=_finite, default=None,
                   help="guidance scale (default: the pipeline's, e.g. SD 7.5, SD-XL 5, DiT 4, PixArt 4.5, LDM 1)")
    g.add_argument("--seed", type=_seed, default=0, help="random seed of every draw (default 0)")
    from .samplers import sampler_names
    g.add_argument("--sampler", default=None, help="sampler (default: the checkpoint's scheduler): "
                   + ", ".join(sorted({n for n in sampler_names() if not n.endswith("scheduler")})))
    g.add_argument("--size", type=_size, default=None, help="WxH (default: the model's)")
    g.add_argument("--image", action="append", default=None, help="input image: img2img / inpainting / "
                   "InstructPix2Pix / LDM super-resolution input; the control / condition image of ControlNet / "
                   "T2I-Adapter (once per net for a pipeline with several ControlNets or adapters)")
    g.add_argument("--strength", type=_strength, default=None, help="image-to-image / inpainting strength in (0, 1]")
    g.add_argument("--mask", default=None, help="inpainting mask (white = repaint)")
    g.add_argument("--image-guidance", type=_finite, default=None, help="InstructPix2Pix image guidance (default "
                   "1.5)")
    g.add_argument("--class-label", type=int, default=None, help="class-conditional DDPM/DDIM and DiT (required), "
                   "consistency (default: drawn from --seed)")
    g.add_argument("--per-class", type=_positive_int, default=None, help="bundled digit model: images per class row "
                   "(default 8)")
    seen = {a for action in g._actions for a in action.option_strings}
    for fam in families():
        for option, spec in fam.cli_options:
            if option not in seen:
                g.add_argument(option, **spec)
                seen.add(option)
    g.add_argument("--out", default="msdiff.png", help="output PNG / JPEG / WebP / GIF file (default msdiff.png; "
                   "an existing file is overwritten; a video pipeline writes an animated GIF, the name's suffix "
                   "becoming .gif)")
    g.add_argument("--prompts", default=None, help="a prompts file (one prompt per line, or JSON lines with prompt / "
                   "negative_prompt / seed / size / steps / guidance / class_label / name): one PNG per entry in "
                   "--out-dir, entries already there skipped, shared among msrun workers; entry i's seed is "
                   "--seed + i unless it gives one")
    g.add_argument("--out-dir", default="msdiff-out", help="--prompts: the output folder (default msdiff-out)")
    g.add_argument("--mode", choices=("pynative", "graph"), default=None,
                   help="graph compiles the denoising step with mindspore.jit; default: msdiff's one default "
                   "(graph, or $MSDIFF_MODE), the same as the Python recipes'")
    g.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32", help="weights and activations (default "
                   "fp32; the VAE decodes in fp32 either way)")
    g.add_argument("--from-png", default=None, help="rerun the generation stored in a PNG written by msdiff "
                   "generate (options given here override the stored ones)")
    g.add_argument("--lora", action="append", default=None, metavar="FILE[:SCALE]",
                   help="load a LoRA (diffusers / PEFT or kohya safetensors) with its scale (default 1); repeatable")
    g.add_argument("--embedding", action="append", default=None, metavar="FILE",
                   help="load a textual-inversion embedding (safetensors); repeatable")
    g.add_argument("--ip-adapter", default=None, metavar="FILE_OR_FOLDER",
                   help="load an IP-Adapter (base or plus safetensors; its image_encoder/ folder beside it)")
    g.add_argument("--ip-image", default=None, metavar="IMG", help="the image the --ip-adapter reads")
    g.add_argument("--ip-adapter-scale", type=float, default=None, metavar="S", help="the IP-Adapter's scale "
                   "(default 1)")
    g.add_argument("--fp32-blocks", action="append", default=None, metavar="COMPONENT:BLOCK[,BLOCK]",
                   help="with --dtype fp16: compute these blocks in fp32 (a precision plan, e.g. "
                   "vae:decoder.up_blocks.3; see msdiff.diagnose.precision_report); repeatable")
    g.add_argument("--verbose", action="store_true", help="print each net's dtype and fp32 blocks (the plan used)")
    g.add_argument("--debug", action="store_true", help="show the full traceback of an error (or set "
                   "MSDIFF_DEBUG=1)")

    t = sub.add_parser("train", help="train (or resume) the class-conditional digit model")
    t.add_argument("--out", required=True, help="checkpoint folder (diffusers layout; resumed if it exists)")
    t.add_argument("--steps", type=int, default=2000, help="stop after this many steps (a rerun resumes)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch-size", type=_positive_int, default=32, help="the global batch (default 32; under msrun "
                   "each of N workers computes batch / N of it)")
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


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
# the parser dests a generation is reproduced from (--from-png); --out / --debug / --from-png are not part of it
_REPRO = ("model", "prompt", "negative_prompt", "steps", "guidance", "seed", "sampler", "size", "image", "strength",
          "mask", "image_guidance", "class_label", "per_class", "mode", "dtype", "fp32_blocks", "lora",
          "embedding", "ip_adapter", "ip_image", "ip_adapter_scale")


def check_out(out: str) -> Path:
    """The output path, checked before any work: an image suffix, not a folder, a writable folder to hold it."""
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"--out {out!r} is a folder: give a file name such as {Path(out) / 'image.png'}")
    if path.suffix.lower() not in _IMAGE_SUFFIXES:
        raise ValueError(f"--out {out!r} needs an image extension: {', '.join(_IMAGE_SUFFIXES)}")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"--out {out!r}: {parent} is not a folder")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise ValueError(f"--out {out!r}: {probe} is not writable")
    return path


def generation_parameters(args, result: dict) -> dict:
    """Every parameter of the generation under one naming scheme (the CLI's option names), with what was used."""
    from . import __version__
    params = {k: getattr(args, k, None) for k in _REPRO + tuple(_family_dests())}
    params.update(steps=result["steps"], sampler=result["sampler"], model=result["model"],
                  pipeline_class=result.get("pipeline_class"), msdiff_version=__version__)
    if isinstance(params.get("size"), tuple):
        params["size"] = "x".join(str(v) for v in params["size"])
    return {k: v for k, v in params.items() if v is not None}


def _family_dests() -> tuple:
    from .cli_pipelines import specific_options
    return tuple(d for d in specific_options() if d not in _REPRO)


def a1111_parameters(params: dict) -> str:
    """The A1111-style `parameters` text that image viewers and web UIs parse."""
    head = [params.get("prompt", "")]
    if params.get("negative_prompt"):
        head.append(f"Negative prompt: {params['negative_prompt']}")
    fields = [("Steps", "steps"), ("Sampler", "sampler"), ("CFG scale", "guidance"), ("Seed", "seed"),
              ("Size", "size"), ("Model", "model"), ("Denoising strength", "strength"),
              ("Image CFG scale", "image_guidance"), ("Class label", "class_label")]
    tail = ", ".join(f"{label}: {params[key]}" for label, key in fields if key in params)
    return "\n".join(head + [tail + f", Version: msdiff {params.get('msdiff_version')}"])


def _png_info(params: dict):
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    info.add_text("parameters", a1111_parameters(params))
    for key, value in params.items():
        info.add_text(f"msdiff:{key}", str(value))
    info.add_text("msdiff:args", json.dumps({k: params.get(k) for k in _REPRO + _family_dests() if k in params}))
    return info


def save_image(image, out: Path, params: dict) -> None:
    """Write the image atomically (a temporary file renamed into place), with the parameters for PNG; a list of
    frames (a video pipeline's) as an animated GIF at 8 frames per second, the parameters as JSON in its comment."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".msdiff-", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".gif": "GIF"}.get(out.suffix.lower(), "PNG")
        if isinstance(image, list):
            image[0].save(tmp, format="GIF", save_all=True, append_images=image[1:], duration=125, loop=0,
                          comment=json.dumps(params, sort_keys=True, default=str).encode())
        elif fmt == "PNG":
            image.save(tmp, format=fmt, pnginfo=_png_info(params))
        else:
            image.save(tmp, format=fmt)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def from_png(args, argv_dests: set) -> None:
    """Fill args from a PNG's msdiff:args (options given on the command line win)."""
    import PIL.Image
    try:
        text = PIL.Image.open(args.from_png).text.get("msdiff:args")
    except OSError as e:
        raise ValueError(f"--from-png {args.from_png!r}: cannot read it ({e})") from None
    if not text:
        raise ValueError(f"--from-png {args.from_png!r} has no msdiff:args metadata (not written by msdiff generate)")
    for key, value in json.loads(text).items():
        if key in argv_dests:
            continue
        if key == "size" and isinstance(value, str):
            value = _size(value)
        setattr(args, key, value)


def _generate_batch(args) -> int:
    """--prompts FILE: one image per entry into --out-dir (resumable; under msrun each worker takes its share)."""
    from .batch import run_prompts
    from .cli_pipelines import generate
    if args.prompt is not None:
        raise ValueError("--prompt and --prompts exclude each other: put every prompt in the --prompts file")
    shared = {k: getattr(args, k, None) for k in _REPRO + _family_dests() if getattr(args, k, None) is not None}

    loaded = {}  # the components, loaded once for every entry

    def one(fields):
        run = argparse.Namespace(**{**vars(args), **fields})
        run.size = tuple(run.size) if run.size is not None else None
        result = generate(run, cache=loaded)
        return {"image": result["image"], **generation_parameters(run, result)}

    done = run_prompts(args.prompts, args.out_dir, one, defaults=shared, save=save_image)
    print(f"wrote {len(done.written)} images to {args.out_dir} ({done.skipped} of this worker's {done.share} "
          f"already there)")
    return 0


def _generate(args) -> int:
    from .cli_pipelines import generate
    if args.prompts is not None:
        return _generate_batch(args)
    out = check_out(args.out)
    result = generate(args)
    if args.mode == "graph" and result["first_step_s"] is not None:
        print(f"graph compile + first step: {result['first_step_s']:.1f} s", file=sys.stderr)
    if isinstance(result["image"], list) and out.suffix.lower() != ".gif":  # a video's frames: an animated GIF
        out = out.with_suffix(".gif")
    save_image(result["image"], out, generation_parameters(args, result))
    print(f"wrote {out}")
    return 0


def _train(args) -> int:
    from .recipes.digits import train_digits
    from .distributed import world
    folder = train_digits(args.out, steps=args.steps, seed=args.seed, batch_size=args.batch_size, export=args.export)
    if world().is_main:
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


def _given(argv) -> set:
    """The dests given on the command line (for --from-png: those override the stored ones)."""
    names = set()
    for token in (argv if argv is not None else sys.argv[1:]):
        if token.startswith("--"):
            names.add(token[2:].split("=")[0].replace("-", "_"))
    return names


def main(argv=None) -> int:
    """Entry point of the `msdiff` command: one-line errors (exit 2) unless --debug asks for the traceback."""
    parser = _parser()
    args = parser.parse_args(argv)
    run = {"generate": _generate, "train": _train, "support": _support}[args.command]
    try:
        if getattr(args, "from_png", None):
            from_png(args, _given(argv))
        return run(args)
    except Exception as e:  # the CLI's one error path
        if getattr(args, "debug", False) or os.environ.get("MSDIFF_DEBUG"):
            raise
        text = " ".join(str(e).split()) or type(e).__name__
        if not isinstance(e, _USER_ERRORS):
            text = f"{type(e).__name__}: {text} (run with --debug for the traceback)"
        print(f"msdiff {args.command}: error: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
