"""LoRA rows: the tiny SD / SD-XL UNet and text encoders with two adapters loaded (msdiff.io.lora)."""
import json
from pathlib import Path

import numpy as np

from . import Row, call, tensor

# row case -> (pipeline folder, adapter files in load order, UNet inputs)
_CASES = {"sd_ab": ("sd", (("sd_peft", "a"), ("sd_kohya", "b")), ("sample", "timestep", "encoder_hidden_states")),
          "sdxl_cd": ("sdxl", (("sdxl_kohya", "c"), ("sdxl_peft", "d")),
                      ("sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"))}
_NAMES = {"sd_ab": "SD 1.x: PEFT + kohya", "sdxl_cd": "SD-XL: kohya SGM + PEFT"}


def rows(fix: Path) -> list:
    if not (fix / "cases.json").is_file():
        return []
    cases = json.loads((fix / "cases.json").read_text())
    out = []
    for case, (folder, files, inputs) in _CASES.items():

        def run(mode, dtype, case=case, folder=folder, files=files, inputs=inputs):
            import msdiff
            from msdiff.io.lora import load_lora, set_adapters

            d = dict(np.load(fix / "cases.npz"))
            c = msdiff.load_pipeline(fix.parent / "pipelines" / folder, dtype=dtype)
            for name, adapter in files:
                load_lora(c, fix / f"{name}.safetensors", adapter_name=adapter)
            set_adapters(c, cases[case]["adapters"], cases[case]["weights"])
            unet, te = c.unet, c.text_encoder

            def f(x, t, ctx, *extra):
                return unet(x, t, ctx, *extra)

            def g(ids):
                return te(ids)[0]

            args = [tensor(d[f"{folder}:{k}"]) for k in inputs]
            pairs = [(call(f, mode, *args)[0], d[f"{case}:eps"]),
                     (call(g, mode, tensor(d[f"{case}:input_ids"]))[0], d[f"{case}:te"])]
            return pairs

        out.append(Row(f"UNet2DConditionModel + CLIP text + LoRA ({_NAMES[case]}, 2 adapters)", "net", run))
    return out
