"""Rows of the x4 upscaler, SD-XL InstructPix2Pix and DiffEdit recipes (fixtures from tools/fixtures/sd_more.py).

Every row also carries diffusers' own fp16 output (fp16.npz), so an fp16 cell shows both errors. DiffEdit has a
row per entry point, each on its recorded inputs (generate_mask's 0 / 1 mask, invert's latents, the edit's image),
and one for the three chained on msdiff's own mask and inversion. A flipped pixel of the binary mask is a large
rel L2: in fp16 both diffusers and msdiff flip pixels whose fp32 map value lies near the 0.5 threshold.
"""
import importlib
import json
from pathlib import Path

import numpy as np

from . import Row, diffusers_fp16, fp16_seeds

_RECIPES = {"upscale": "upscale", "sdxl_pix2pix": "instruct_pix2pix"}


def _kwargs(fix: Path, name: str, meta: dict, mode: str) -> tuple:
    import PIL.Image
    d = dict(np.load(fix / f"{name}.npz"))
    kwargs = dict(meta["args"], mode=mode, noise=[d[f"noise_{i}"] for i in range(meta["num_noise"])])
    if "image" in d:
        kwargs["image"] = PIL.Image.fromarray(d["image"])
    for key in ("latents", "mask_image", "image_latents"):
        if key in d:
            kwargs[key] = d[key]
    return kwargs, d["expected"]


def _np(x):
    return np.asarray(x.asnumpy() if hasattr(x, "asnumpy") else x, np.float32)


def _row(fix: Path, name: str, meta: dict) -> Row:
    def run(mode, dtype):
        import msdiff
        de = importlib.import_module("msdiff.recipes.diffedit")
        from msdiff.recipes.instruct_pix2pix import instruct_pix2pix
        from msdiff.recipes.upscale import upscale
        c = msdiff.load_pipeline(fix / meta["folder"], dtype=dtype)
        kwargs, want = _kwargs(fix, name, meta, mode)
        own = diffusers_fp16(fix, name, dtype)
        if meta["folder"] == "upscale":
            return [(upscale(c, output_type="np", **kwargs), want, own)]
        if meta["folder"] == "sdxl_pix2pix":
            return [(instruct_pix2pix(c, output_type="np", **kwargs), want, own)]
        if meta["entry"] == "generate_mask":
            def run_one(inputs):  # one seed's draws (fp16_seeds); {} = the recorded case
                return de.generate_mask(c, **dict(kwargs, **({"noise": [inputs["noise_0"], inputs["noise_1"]]}
                                                             if inputs else {})))
            return fp16_seeds(fix, name, dtype, run_one) or [(run_one({}), want, own)]
        if meta["entry"] == "invert":
            return [(_np(de.invert(c, **kwargs)), want, own)]
        kwargs.pop("noise")
        return [(de.diffedit(c, **kwargs), want, own)]

    label = meta["entry"] if meta["entry"] != "__call__" else "edit" if name == "diffedit" else name
    return Row(f"{meta['pipeline_class']} ({label})", "recipe", run)


def _chain_row(fix: Path, cases: dict) -> Row:
    def run(mode, dtype):
        import msdiff
        de = importlib.import_module("msdiff.recipes.diffedit")
        c = msdiff.load_pipeline(fix / "diffedit", dtype=dtype)
        mask_kw, _ = _kwargs(fix, "diffedit_mask", cases["diffedit_mask"], mode)
        inv_kw, _ = _kwargs(fix, "diffedit_invert", cases["diffedit_invert"], mode)
        edit_kw, want = _kwargs(fix, "diffedit", cases["diffedit"], mode)
        for key in ("noise", "mask_image", "image_latents"):
            edit_kw.pop(key)

        def run_one(inputs):  # one seed's draws (fp16_seeds: the mask's two, then invert's); {} = recorded
            if inputs:
                mask_kw["noise"], inv_kw["noise"] = [inputs["noise_0"], inputs["noise_1"]], [inputs["noise_2"]]
            mask = de.generate_mask(c, **mask_kw)
            return de.diffedit(c, mask_image=mask, image_latents=de.invert(c, **inv_kw), **edit_kw)

        seeds = fp16_seeds(fix, "diffedit_chain", dtype, run_one)
        return seeds or [(run_one({}), want, diffusers_fp16(fix, "diffedit_chain", dtype))]

    return Row("StableDiffusionDiffEditPipeline (generate_mask -> invert -> edit)", "recipe", run)


def rows(fix: Path) -> list:
    if not (fix / "cases.json").is_file():
        return []
    cases = json.loads((fix / "cases.json").read_text())
    out = [_row(fix, name, meta) for name, meta in sorted(cases.items())]
    return out + [_chain_row(fix, cases)]
