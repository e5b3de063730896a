"""Rows of the GLIGEN text-image recipe and its nets (fixtures from tools/fixtures/gligen_text_image.py).

Recipe rows carry diffusers' own fp16 output (fp16.npz), so an fp16 cell shows both errors. Net rows: the UNet with
the text-image position_net (GLIGENTextBoundingboxProjection, feature_type "text-image") and the CLIPImageProjection,
each against diffusers' fp32 output. The fixture keeps the UNet's weights in pipe_unet.npz; `pipeline_folder` writes
the diffusers folder msdiff loads.

The fp16 error of inpaint_text_image (tiny UNet, CFG 7.5, 3 steps) depends on the draw more than on the code: over
generator seeds 0-5 of that case, diffusers' own fp16 image rel L2 was 6.4e-3, 1.4e-3, 1.1e-3, 8.6e-4, 2.1e-3,
9.7e-3 and msdiff's (same recorded noise) 1.1e-2, 2.1e-3, 9.9e-4, 3.1e-3, 2.1e-3, 1.9e-3 (means 3.6e-3 / 3.5e-3);
its UNet alone in fp16 is 8.6e-4 off fp32 where torch's fp16 is 9.1e-4 (measured 2026-12-02).
"""
import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import Row, call, diffusers_fp16, fp16_seeds, tensor
from ._packed import pipeline_folder as packed_folder


def pipeline_folder(fix: Path) -> Path:
    """The fixture's diffusers pipeline folder (pipe/ with its UNet from pipe_unet.npz, tools/support/_packed.py)."""
    return packed_folder(Path(fix), "pipe")


@functools.lru_cache(maxsize=None)
def inpaint_folder(fix: Path, which: str) -> Path:
    """The inpainting twin (UNet in_channels 9, conv_in from inpaint.npz) of the "text_image" pipeline (pipe/) or
    the "text_box" one (tests/fixtures/sd_k_gligen/gligen), in a temporary folder removed at exit."""
    from safetensors.numpy import load_file, save_file

    source = pipeline_folder(fix) if which == "text_image" else packed_folder(Path(fix).parent / "sd_k_gligen",
                                                                             "gligen")
    root = Path(tempfile.mkdtemp(prefix=f"msdiff-gligen-inpaint-{which}-"))
    atexit.register(shutil.rmtree, root, True)
    folder = root / "pipe"
    shutil.copytree(source, folder)
    config = json.loads((folder / "unet" / "config.json").read_text())
    (folder / "unet" / "config.json").write_text(json.dumps(dict(config, in_channels=9), indent=2))
    path = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights = load_file(str(path))
    with np.load(Path(fix) / "inpaint.npz") as f:
        weights["conv_in.weight"] = f[f"{which}:conv_in.weight"]
    save_file(weights, str(path), metadata={"format": "pt"})
    return folder


def inpaint_case(fix: Path, name: str, meta: dict) -> tuple:
    """(recipe, keyword arguments, expected images, diffusers' fp16 images) of a gligen_inpaint_image case."""
    import PIL.Image
    from msdiff.recipes.gligen import gligen
    from msdiff.recipes.gligen_text_image import gligen_text_image
    with np.load(fix / "inpaint.npz") as f:
        d = {k.split(":", 1)[1]: f[k] for k in f.files if k.startswith(name + ":")}
    kwargs = dict(meta["args"], noise=[d[f"noise_{i}"] for i in range(meta["num_noise"])],
                  gligen_inpaint_image=PIL.Image.fromarray(d["inpaint"]))
    if "latents" in d:
        kwargs["latents"] = d["latents"]
    if "gligen_images" in kwargs:
        kwargs["gligen_images"] = [PIL.Image.fromarray(d[k]) for k in kwargs["gligen_images"]]
    recipe = gligen_text_image if meta["pipeline"] == "text_image" else gligen
    return recipe, kwargs, d["expected"], d["fp16"]


def case_kwargs(fix: Path, name: str, meta: dict) -> tuple:
    """(recipe keyword arguments, expected images) of a recorded case: its images, latents and noise draws."""
    import PIL.Image
    d = dict(np.load(fix / f"{name}.npz"))
    kwargs = dict(meta["args"], noise=[d[f"noise_{i}"] for i in range(meta["num_noise"])])
    if "latents" in d:
        kwargs["latents"] = d["latents"]
    if "gligen_images" in kwargs:
        kwargs["gligen_images"] = [None if k is None else PIL.Image.fromarray(d[k]) for k in kwargs["gligen_images"]]
    return kwargs, d["expected"]


def _recipe_row(fix: Path, name: str, meta: dict) -> Row:
    def run(mode, dtype):
        import msdiff
        from msdiff.recipes.gligen_text_image import gligen_text_image
        c = msdiff.load_pipeline(pipeline_folder(fix), dtype=dtype)
        kwargs, want = case_kwargs(fix, name, meta)
        return [(gligen_text_image(c, output_type="np", mode=mode, **kwargs), want,
                 diffusers_fp16(fix, name, dtype))]

    return Row(f"{meta['pipeline_class']} ({name})", "recipe", run)


def _inpaint_row(fix: Path, name: str, meta: dict) -> Row:
    def run(mode, dtype):
        import msdiff
        c = msdiff.load_pipeline(inpaint_folder(fix, meta["pipeline"]), dtype=dtype)
        recipe, kwargs, want, half = inpaint_case(fix, name, meta)

        def run_one(inputs):  # one seed's draws (fp16_seeds); {} = the recorded case
            noise = {"noise": [inputs[f"noise_{i}"] for i in range(meta["num_noise"])]} if inputs else {}
            return recipe(c, output_type="np", mode=mode, **dict(kwargs, **noise))

        return fp16_seeds(fix, name, dtype, run_one) or [(run_one({}), want, half if dtype == "float16" else None)]

    return Row(f"{meta['pipeline_class']} ({name}, gligen_inpaint_image)", "recipe", run)


def _unet_row(fix: Path) -> Row:
    def run(mode, dtype):
        import mindspore as ms
        import msdiff
        d = dict(np.load(fix / "nets.npz"))
        net = msdiff.load(pipeline_folder(fix) / "unet", dtype=dtype)

        def f(sample, t, context, *grounding):
            return net(sample, t, context, gligen=grounding)

        keys = ("sample", "timestep", "context", "boxes", "masks", "phrases_masks", "image_masks",
                "phrases_embeddings", "image_embeddings")
        args = tuple(tensor(d[f"unet:{k}"]) for k in keys)
        return [(call(f, mode, *args, ms.Tensor(1.0, ms.float32))[0], d["unet:expected"])]

    return Row("UNet2DConditionModel (GLIGEN text-image: GLIGENTextBoundingboxProjection feature_type text-image, "
               "GatedSelfAttentionDense; tiny)", "net", run)


def _project_row(fix: Path) -> Row:
    def run(mode, dtype):
        import msdiff
        d = dict(np.load(fix / "nets.npz"))
        net = msdiff.load(fix / "pipe", "image_project", dtype=dtype)
        return [(call(net, mode, tensor(d["project:input"]))[0], d["project:expected"])]

    return Row("CLIPImageProjection (tiny)", "net", run)


def rows(fix: Path) -> list:
    if not (fix / "cases.json").is_file():
        return []
    cases = json.loads((fix / "cases.json").read_text())
    inpaint = json.loads((fix / "inpaint.json").read_text())
    return [_recipe_row(fix, name, meta) for name, meta in sorted(cases.items())] + \
        [_inpaint_row(fix, name, meta) for name, meta in sorted(inpaint.items())] + [_unet_row(fix), _project_row(fix)]
