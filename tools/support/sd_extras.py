"""Rows of the SD family's extras: CLIP image encoders, DPT-Hybrid depth estimation, image variation and
depth-to-image recipes."""
from pathlib import Path

import numpy as np

from . import Row, call, tensor


def _clip_rows(fix: Path) -> list:
    import msdiff
    rows = []
    for key, folder, cls in (("image_encoder", "image_variation/image_encoder", "CLIPVisionModelWithProjection"),
                             ("vision_model", "vision_model", "CLIPVisionModel")):
        def run(mode, dtype, key=key, folder=folder):
            d = dict(np.load(fix / "clip_vision.npz"))
            net = msdiff.load(fix / folder, dtype=dtype)

            def f(x):
                out = net(x)
                return out[0], out[1]

            last, pooled = call(f, mode, tensor(d[f"{key}:pixel_values"]))
            return [(last, d[f"{key}:last"]), (pooled, d[f"{key}:pooled"])]

        rows.append(Row(f"{cls} (tiny)", "net", run))
    return rows


def _dpt_rows(fix: Path) -> list:
    import msdiff
    rows = []
    for key, folder, tag in (("dpt", "depth2img/depth_estimator", "tiny hybrid"),
                             ("dpt_bn", "dpt_bn", "tiny hybrid, batch-norm fusion")):
        def run(mode, dtype, key=key, folder=folder):
            d = dict(np.load(fix / "dpt.npz"))
            net = msdiff.load(fix / folder, dtype=dtype)

            def f(x):
                return net(x)

            return [(call(f, mode, tensor(d["pixel_values"]))[0], d[f"{key}:predicted_depth"])]

        rows.append(Row(f"DPTForDepthEstimation ({tag})", "net", run))
    return rows


def _recipe_rows(fix: Path) -> list:
    import json
    cases = json.loads((fix / "pipelines.json").read_text())
    rows = []
    for name, meta in sorted(cases.items()):
        def run(mode, dtype, name=name, meta=meta):
            import PIL.Image
            import msdiff
            from msdiff import recipes
            d = dict(np.load(fix / f"{name}.npz"))
            args = {k: v for k, v in meta["args"].items() if k not in ("output_type", "latents", "depth_map")}
            args.update(image=PIL.Image.fromarray(d["image"]), output_type="np", mode=mode,
                        noise=[d[f"noise_{i}"] for i in range(meta["num_noise"])])
            if "latents" in d:
                args["latents"] = d["latents"]
            components = msdiff.load_pipeline(fix / meta["folder"], dtype=dtype,
                                              skip=("safety_checker", "feature_extractor")
                                              if meta["folder"] == "depth2img" else ("safety_checker",))
            if meta["folder"] == "depth2img":
                return [(recipes.depth_to_image(components, depth_map=d.get("depth_map"), **args), d["expected"])]
            return [(recipes.image_variation(components, **args), d["expected"])]

        rows.append(Row(f"{meta['pipeline_class']} ({name})", "recipe", run))
    return rows


def rows(fix: Path) -> list:
    out = []
    if (fix / "clip_vision.npz").is_file():
        out += _clip_rows(fix)
    if (fix / "dpt.npz").is_file():
        out += _dpt_rows(fix)
    if (fix / "pipelines.json").is_file():
        out += _recipe_rows(fix)
    return out
