"""SD3Transformer2DModel and StableDiffusion3Pipeline rows (the flow-match Euler sampler runs inside the pipeline
rows; samplers have no rows of their own)."""
import dataclasses
import json
from pathlib import Path

import numpy as np

from . import Row, call, diffusers_fp16, tensor


def rows(fix: Path) -> list:
    if not (fix / "cases.json").is_file():
        return []
    import msdiff
    out = []
    for tag in ("net_sd3", "net_sd35"):
        def run(mode, dtype, tag=tag):
            d = dict(np.load(fix / "net.npz"))
            net = msdiff.load(fix / tag, dtype=dtype)

            def f(sample, t, context, pooled):
                return net(sample, t, context, pooled)

            rest = [tensor(d[f"{tag}:{k}"]) for k in ("timestep", "encoder_hidden_states", "pooled_projections")]
            return [(call(f, mode, tensor(d[f"{tag}:{x}"]), *rest)[0], d[f"{tag}:{o}"],
                     diffusers_fp16(fix, f"{tag}:{o}", dtype)) for x, o in (("sample", "out"), ("wide", "out_wide"))]

        out.append(Row(f"SD3Transformer2DModel ({'SD3' if tag == 'net_sd3' else 'SD3.5: rms qk norm, dual attention'})",
                       "net", run))
    cases = json.loads((fix / "cases.json").read_text())
    for name in ("cfg", "prompts", "no_t5", "dynamic"):
        def run(mode, dtype, name=name, case=cases[name]):
            from msdiff.recipes.sd3 import sd3
            d = dict(np.load(fix / "cases.npz"))
            c = msdiff.load_pipeline(fix / "pipe", dtype=dtype)
            if case.get("no_t5"):
                c = dataclasses.replace(c, extra=dict(c.extra, text_encoder_3=None, tokenizer_3=None))
            images = sd3(c, **case["args"], latents=d[f"{name}:latents"], sampler=case.get("scheduler"), mode=mode,
                         output_type="np")
            return [(images, d[f"{name}:expected"], diffusers_fp16(fix, name, dtype))]

        out.append(Row(f"StableDiffusion3Pipeline ({name})", "recipe", run))
    return out
