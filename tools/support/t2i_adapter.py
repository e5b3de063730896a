"""T2IAdapter and adapter pipeline rows."""
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
        if name.startswith("unet_"):
            continue

        def run(mode, dtype, name=name, meta=meta):
            d = dict(np.load(fix / "nets.npz"))
            folder = fix / "light" if meta["folder"] == "light" else fix / meta["folder"] / "adapter"
            net = msdiff.load(folder, dtype=dtype)

            def f(image):
                return net(image)

            got = call(f, mode, tensor(d[f"{name}:image"].astype(np.float32) / np.float32(255.0)))
            return list(zip(got, [d[f"{name}:feature_{i}"] for i in range(meta["num_features"])]))

        rows.append(Row(f"T2IAdapter ({name})", "net", run))
    for name, meta in sorted(cases["nets"].items()):
        if not name.startswith("unet_"):
            continue

        def run(mode, dtype, folder=name[len("unet_"):], meta=meta):
            d, nets = dict(np.load(fix / "unet.npz")), dict(np.load(fix / "nets.npz"))
            unet = msdiff.load(fix / folder / "unet", dtype=dtype)
            n = cases["nets"][meta["case"]]["num_features"]
            features = tuple(tensor(nets[f"{meta['case']}:feature_{i}"]) * meta["scale"] for i in range(n))

            def f(x, t, ctx, te, ids, features):
                return unet(x, t, ctx, te, ids, None, None, None, features)

            get = (lambda k: tensor(d.get(f"{folder}:{k}")))
            got = call(f, mode, get("sample"), get("timestep"), get("encoder_hidden_states"), get("text_embeds"),
                        get("time_ids"), features)
            return [(got[0], d[f"{folder}:out"])]

        rows.append(Row(f"UNet2DConditionModel + T2I-Adapter features ({name[len('unet_'):]})", "net", run))
    return rows + image_condition_rows(fix, cases["pipelines"], "t2i_adapter")
