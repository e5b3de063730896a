"""Rows of the DeepFloyd IF pipelines and their act_fn "gelu" UNets (fixtures from tools/fixtures/deepfloyd_if.py).

Every pipeline row also carries diffusers' own fp16 output (fp16.npz, the same recorded noise), so an fp16 cell
shows both errors. The stage I "pt" case (text) returns the raw [-1, 1] Tensor stage II takes.
"""
import importlib
import json
from pathlib import Path

import numpy as np

from . import Row, call, diffusers_fp16, tensor

RECIPES = {"IFPipeline": ("deepfloyd_if", "deepfloyd_if_text_to_image"),
           "IFImg2ImgPipeline": ("deepfloyd_if", "deepfloyd_if_img2img"),
           "IFInpaintingPipeline": ("deepfloyd_if", "deepfloyd_if_inpaint"),
           "IFSuperResolutionPipeline": ("if_superres", "deepfloyd_if_superres"),
           "IFImg2ImgSuperResolutionPipeline": ("if_superres", "deepfloyd_if_img2img_superres"),
           "IFInpaintingSuperResolutionPipeline": ("if_superres", "deepfloyd_if_inpaint_superres")}


def case_kwargs(fix: Path, name: str, meta: dict, mode: str) -> tuple:
    """(recipe keyword arguments, diffusers' fp32 output) of a recorded case: arguments, images, noise."""
    import PIL.Image
    from mindspore import Tensor
    d = dict(np.load(fix / f"{name}.npz"))
    flat, noise = d["noise"], []
    for shape in meta["noise_shapes"]:
        n = int(np.prod(shape))
        noise.append(flat[:n].reshape(shape))
        flat = flat[n:]
    kwargs = dict(meta["args"], mode=mode, noise=noise)
    for key in ("image", "mask_image", "original_image"):
        if key in d:
            kwargs[key] = PIL.Image.fromarray(d[key]) if d[key].dtype == np.uint8 else Tensor(d[key])
    return kwargs, d["expected"]


def _row(fix: Path, name: str, meta: dict) -> Row:
    def run(mode, dtype):
        import msdiff
        module, fn = RECIPES[meta["pipeline_class"]]
        recipe = getattr(importlib.import_module(f"msdiff.recipes.{module}"), fn)
        kwargs, want = case_kwargs(fix, name, meta, mode)
        got = recipe(msdiff.load_pipeline(fix / meta["folder"], dtype=dtype), **kwargs)
        got = got.asnumpy() if hasattr(got, "asnumpy") else got
        return [(np.asarray(got, np.float32), want, diffusers_fp16(fix, name, dtype))]

    return Row(f"{meta['pipeline_class']} ({name})", "recipe", run)


def _unet_row(fix: Path, stage: str) -> Row:
    def run(mode, dtype):
        import msdiff
        d = dict(np.load(fix / f"unet_{stage}.npz"))
        unet = msdiff.load(fix / f"stage_{stage}", "unet", dtype=dtype)
        labels = tensor(d["class_labels"]) if "class_labels" in d else None

        def fn(x, t, ctx, labels):
            return unet(x, t, ctx, class_labels=labels)

        return [(call(fn, mode, tensor(d["sample"]), tensor(d["timestep"]), tensor(d["encoder_hidden_states"]),
                      labels)[0], d["out"])]

    label = "stage I, 3 -> 6 channels" if stage == "1" else "stage II, noise-level class labels"
    return Row(f"UNet2DConditionModel (IF act_fn gelu, {label})", "net", run)


def rows(fix: Path) -> list:
    if not (fix / "cases.json").is_file():
        return []
    cases = json.loads((fix / "cases.json").read_text())
    return [_unet_row(fix, "1"), _unet_row(fix, "2")] + [_row(fix, n, m) for n, m in sorted(cases.items())]
