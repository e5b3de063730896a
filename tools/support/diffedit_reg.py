"""Row of DiffEdit's regularised inversion (invert with num_reg_steps=2; fixtures from
tools/fixtures/diffedit_reg.py, run on sd_more's tiny DiffEdit pipeline folder): diffusers' VAE draw and roll
shifts replayed; the fp16 cells are medians over 5 generator seeds (fp16_seeds_invert.npz), diffusers' own fp16
error beside msdiff's. msdiff's regulariser runs in float32 on the net's output in both dtypes; diffusers' fp16
run takes its gradients in fp16."""
import json
from pathlib import Path

import numpy as np

from . import Row, fp16_seeds


def rows(fix: Path) -> list:
    if not (fix / "case.json").is_file():
        return []
    case = json.loads((fix / "case.json").read_text())

    def run(mode, dtype):
        import PIL.Image

        import msdiff
        from msdiff.recipes.diffedit import invert
        d = dict(np.load(fix / "invert.npz"))
        c = msdiff.load_pipeline(fix.parent / case["folder"], dtype=dtype)

        def run_one(inputs):
            inputs = dict(d, **inputs)
            return invert(c, image=PIL.Image.fromarray(d["image"]), noise=[inputs["noise_0"]],
                          reg_shifts=inputs["shifts"], mode=mode, **case["args"]).asnumpy()

        seeds = fp16_seeds(fix, "invert", dtype, run_one)
        if seeds is not None:
            return seeds
        return [(run_one({}), d["expected"], None)]

    return [Row(f"{case['pipeline_class']} (invert, num_reg_steps={case['args']['num_reg_steps']})", "recipe", run)]
