"""Rows of the GLIGEN and x2 latent upscaler recipes and their new nets (fixtures from tools/fixtures/sd_k_gligen.py).

Recipe rows carry diffusers' own fp16 output (fp16.npz), so an fp16 cell shows both errors. Net rows: the GLIGEN UNet
(GatedSelfAttentionDense fusers, GLIGENTextBoundingboxProjection position_net) with grounding inputs, and the K-block
UNet of the latent upscaler (KDownBlock2D, KCrossAttnDownBlock2D, KAttentionBlock, KCrossAttnUpBlock2D, KUpBlock2D,
AdaGroupNorm resnets), each against diffusers' fp32 output.
"""
import json
from pathlib import Path

import numpy as np

from . import Row, call, diffusers_fp16, tensor
from ._packed import pipeline_folder


def _kwargs(fix: Path, name: str, meta: dict, mode: str) -> tuple:
    import PIL.Image
    d = dict(np.load(fix / f"{name}.npz"))
    kwargs = dict(meta["args"], mode=mode, noise=[d[f"noise_{i}"] for i in range(meta["num_noise"])])
    if "latents" in d:
        kwargs["latents"] = d["latents"]
    if "image" in d:
        kwargs["image"] = PIL.Image.fromarray(d["image"]) if d["image"].dtype == np.uint8 else d["image"]
    if meta.get("scheduler"):
        kwargs["sampler"] = meta["scheduler"]
    return kwargs, d["expected"]


def _recipe_row(fix: Path, name: str, meta: dict) -> Row:
    def run(mode, dtype):
        import msdiff
        from msdiff.recipes.gligen import gligen
        from msdiff.recipes.latent_upscale import latent_upscale
        recipe = gligen if meta["folder"] == "gligen" else latent_upscale
        c = msdiff.load_pipeline(pipeline_folder(fix, meta["folder"]), dtype=dtype)
        kwargs, want = _kwargs(fix, name, meta, mode)
        return [(recipe(c, output_type="np", **kwargs), want, diffusers_fp16(fix, name, dtype))]

    return Row(f"{meta['pipeline_class']} ({name})", "recipe", run)


def _gligen_net_row(fix: Path) -> Row:
    def run(mode, dtype):
        import mindspore as ms
        import msdiff
        d = dict(np.load(fix / "unet_gligen.npz"))
        net = msdiff.load(pipeline_folder(fix, "gligen") / "unet", dtype=dtype)

        def f(sample, t, context, boxes, masks, embeds, scale):
            return net(sample, t, context, gligen=(boxes, masks, embeds, scale))

        args = tuple(tensor(d[k]) for k in ("sample", "timestep", "context", "boxes", "masks", "positive_embeddings"))
        return [(call(f, mode, *args, ms.Tensor(1.0, ms.float32))[0], d["expected"])]

    return Row("UNet2DConditionModel (GLIGEN: GatedSelfAttentionDense fusers, GLIGENTextBoundingboxProjection; tiny)",
               "net", run)


def _k_net_row(fix: Path) -> Row:
    def run(mode, dtype):
        import msdiff
        d = dict(np.load(fix / "unet_k.npz"))
        net = msdiff.load(pipeline_folder(fix, "latent_upscale") / "unet", dtype=dtype)
        args = tuple(tensor(d[k]) for k in ("sample", "timestep", "context", "timestep_cond"))
        return [(call(net, mode, *args)[0], d["expected"])]

    return Row("UNet2DConditionModel (K blocks: KDownBlock2D, KCrossAttnDownBlock2D, KAttentionBlock, "
               "KCrossAttnUpBlock2D, KUpBlock2D; tiny)", "net", run)


def rows(fix: Path) -> list:
    if not (fix / "cases.json").is_file():
        return []
    cases = json.loads((fix / "cases.json").read_text())
    return [_recipe_row(fix, name, meta) for name, meta in sorted(cases.items())] + \
        [_gligen_net_row(fix), _k_net_row(fix)]
