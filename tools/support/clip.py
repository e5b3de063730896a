"""CLIP text encoder rows."""
from pathlib import Path

import numpy as np

from . import Row, call, tensor


def rows(fix: Path) -> list:
    import msdiff
    from safetensors.numpy import load_file
    rows = []
    for folder, cls in (("text_encoder", "CLIPTextModel"), ("text_encoder_2", "CLIPTextModelWithProjection")):
        io = fix / f"io_{folder}_prompts.safetensors"
        if not io.is_file():
            continue

        def run(mode, dtype, folder=folder, io=io):
            d = load_file(str(io))
            net = msdiff.load(fix / folder, dtype=dtype)

            def f(ids):
                out = net(ids)
                return out[0], out[1]

            last, pooled = call(f, mode, tensor(d["input_ids"].astype(np.int32)))
            return [(last, d["last_hidden_state"]), (pooled, d["pooled"])]

        rows.append(Row(cls, "net", run))
    return rows
