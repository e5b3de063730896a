"""Rows of the unCLIP (Karlo) pipelines (fixtures from tools/fixtures/unclip.py).

diffusers' own fp16 run is not available here: torch 2.13's CPU has no fp16 antialiased bicubic interpolation
(the super-res input), so the fp16 cells compare with diffusers' fp32 output alone (cases.json records the error).
"""
import importlib
import json
from pathlib import Path

import numpy as np

from . import Row, diffusers_fp16


def _row(fix: Path, name: str, meta: dict) -> Row:
    def run(mode, dtype):
        import PIL.Image

        import msdiff
        unclip = importlib.import_module("msdiff.recipes.unclip")
        d = dict(np.load(fix / f"{name}.npz"))
        flat, noise = d["noise"], []
        for shape in meta["noise_shapes"]:
            n = int(np.prod(shape))
            noise.append(flat[:n].reshape(shape))
            flat = flat[n:]
        kwargs = dict(meta["args"], mode=mode, noise=noise, output_type="np")
        recipe = unclip.unclip_text_to_image
        if meta["pipeline_class"] == "UnCLIPImageVariationPipeline":
            kwargs["image"], recipe = PIL.Image.fromarray(d["image"]), unclip.unclip_image_variation
        got = recipe(msdiff.load_pipeline(fix / meta["folder"], dtype=dtype), **kwargs)
        return [(got, d["expected"], diffusers_fp16(fix, name, dtype))]

    return Row(f"{meta['pipeline_class']} ({name})", "recipe", run)


def rows(fix: Path) -> list:
    if not (fix / "cases.json").is_file():
        return []
    cases = json.loads((fix / "cases.json").read_text())
    return [_row(fix, name, meta) for name, meta in sorted(cases.items())]
