"""ControlNetModel and ControlNet pipeline rows."""
import json
from pathlib import Path

import numpy as np

from . import Row, call, tensor, image_condition_rows


def rows(fix: Path) -> list:
    if not (fix / "cases.json").is_file():
        return []
    import msdiff
    cases = json.loads((fix / "cases.json").read_text())
    rows = []
    for name, meta in sorted(cases["nets"].items()):
        if name == "pool_bgr":  # a config variant built in the test, not a stored folder
            continue

        def run(mode, dtype, name=name, meta=meta):
            d = dict(np.load(fix / "nets.npz"))
            net = msdiff.load(fix / meta["folder"] / "controlnet", dtype=dtype)
            scale, guess = meta["conditioning_scale"], meta["guess_mode"]

            def f(sample, t, ctx, cond, te, ids):
                down, mid = net(sample, t, ctx, cond, scale, te, ids, guess)
                return down + (mid,)

            get = (lambda k: tensor(d.get(f"{name}:{k}")))
            cond = tensor(d[f"{name}:controlnet_cond"].astype(np.float32) / np.float32(255.0))
            got = call(f, mode, get("sample"), get("timestep"), get("encoder_hidden_states"), cond,
                        get("text_embeds"), get("time_ids"))
            refs = [d[f"{name}:down_{i}"] for i in range(meta["num_down"])] + [d[f"{name}:mid"]]
            return list(zip(got, refs))

        rows.append(Row(f"ControlNetModel ({name})", "net", run))
    return rows + image_condition_rows(fix, cases["pipelines"], "controlnet")
