"""Rows of the SD family's extra nets: CLIP image encoders and DPT-Hybrid depth estimation."""
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


def rows(fix: Path) -> list:
    out = []
    if (fix / "clip_vision.npz").is_file():
        out += _clip_rows(fix)
    if (fix / "dpt.npz").is_file():
        out += _dpt_rows(fix)
    return out
