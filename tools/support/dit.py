"""DiTTransformer2DModel and DiTPipeline rows."""
import json
from pathlib import Path

import numpy as np

from . import Row, call, tensor


def rows(fix: Path) -> list:
    if not (fix / "cases.json").is_file():
        return []
    import msdiff
    rows = []
    for tag, folder in (("pipe", "pipeline/transformer"), ("small", "small")):
        def run(mode, dtype, tag=tag, folder=folder):
            d = dict(np.load(fix / "net.npz"))
            net = msdiff.load(fix / folder, dtype=dtype)

            def f(sample, t, labels):
                return net(sample, t, labels)

            t, y = tensor(d[f"{tag}_timestep"]), tensor(d[f"{tag}_class_labels"].astype(np.int32))
            return [(call(f, mode, tensor(d[f"{tag}_{x}"]), t, y)[0], d[f"{tag}_{o}"])
                    for x, o in (("sample", "out"), ("big", "out_12"))]

        rows.append(Row(f"DiTTransformer2DModel ({tag})", "net", run))
    for name, case in sorted(json.loads((fix / "cases.json").read_text()).items()):
        def run(mode, dtype, name=name, case=case):
            import msdiff
            from msdiff.recipes.dit import dit
            ref = dict(np.load(fix / f"{name}.npz"))
            images = dit(msdiff.load_pipeline(fix / "pipeline", dtype=dtype), case["class_labels"],
                         guidance_scale=case["guidance_scale"], num_inference_steps=case["num_inference_steps"],
                         noise=[ref["latents"]], sampler=case["scheduler"], mode=mode, output_type="np")
            return [(images, ref["expected"])]

        rows.append(Row(f"DiTPipeline ({name})", "recipe", run))
    return rows
