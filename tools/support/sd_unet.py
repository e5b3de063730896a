"""UNet2DConditionModel rows (SD 1.x / 2.x / XL, inpainting, LCM configs)."""
from pathlib import Path

import numpy as np

from . import Row, call, tensor


def rows(fix: Path) -> list:
    import msdiff
    rows = []
    for name in ("sd1", "sd2", "sdxl", "inpaint", "lcm"):
        if not (fix / f"{name}.npz").is_file():
            continue

        def run(mode, dtype, name=name):
            d = dict(np.load(fix / f"{name}.npz"))
            net = msdiff.load(fix / name, dtype=dtype)
            extra = [tensor(d.get(k)) for k in ("text_embeds", "time_ids", "timestep_cond")]

            def f(sample, t, ctx, text_embeds, time_ids, timestep_cond):
                return net(sample, t, ctx, text_embeds, time_ids, timestep_cond)

            got = call(f, mode, tensor(d["sample"]), tensor(d["timestep"]),
                        tensor(d["encoder_hidden_states"]), *extra)
            return [(got[0], d["out"])]

        rows.append(Row(f"UNet2DConditionModel ({name})", "net", run))
    return rows
