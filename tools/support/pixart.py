"""T5EncoderModel, PixArtTransformer2DModel and PixArtAlphaPipeline rows."""
import json
from pathlib import Path

import numpy as np

from . import Row, call, tensor


def rows(fix: Path) -> list:
    if not (fix / "cases.json").is_file():
        return []
    import msdiff
    rows = []
    for tag in ("t5", "t5_relu"):
        def run(mode, dtype, tag=tag):
            d = dict(np.load(fix / "t5.npz"))
            net = msdiff.load(fix / tag, dtype=dtype)

            def f(ids, mask):
                return net(ids, mask)

            ids, mask = tensor(d["input_ids"]), tensor(d["attention_mask"])
            return [(call(f, mode, ids, mask)[0], d[f"{tag}_out"])]

        rows.append(Row(f"T5EncoderModel ({tag})", "net", run))
    for tag in ("cond", "small"):
        def run(mode, dtype, tag=tag):
            d = dict(np.load(fix / "net.npz"))
            net = msdiff.load(fix / tag, dtype=dtype)

            def f(sample, t, context, mask, resolution, aspect_ratio):
                return net(sample, t, context, mask, resolution, aspect_ratio)

            keys = ("timestep", "encoder_hidden_states", "encoder_attention_mask", "resolution", "aspect_ratio")
            rest = [tensor(d[f"{tag}_{k}"]) for k in keys]
            return [(call(f, mode, tensor(d[f"{tag}_{x}"]), *rest)[0], d[f"{tag}_{o}"])
                    for x, o in (("sample", "out"), ("wide", "out_12"))]

        rows.append(Row(f"PixArtTransformer2DModel ({tag})", "net", run))
    cases = json.loads((fix / "cases.json").read_text())
    for name in ("cfg", "plain", "ddim_negative"):
        def run(mode, dtype, name=name, case=cases[name]):
            from msdiff.recipes.pixart import pixart
            ref = dict(np.load(fix / f"{name}.npz"))
            images = pixart(msdiff.load_pipeline(fix / "pipeline", dtype=dtype), case["prompt"],
                            negative_prompt=case["negative_prompt"], guidance_scale=case["guidance_scale"],
                            num_inference_steps=case["num_inference_steps"], height=case["height"],
                            width=case["width"], noise=[ref["latents"]], sampler=case["scheduler"], mode=mode,
                            output_type="np", use_resolution_binning=False)
            return [(images, ref["expected"])]

        rows.append(Row(f"PixArtAlphaPipeline ({name})", "recipe", run))
    return rows
