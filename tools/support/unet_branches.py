"""Rows of UNet2DConditionModel's Kandinsky 2.1 / 2.2, IF-style and unCLIP config branches (tiny nets)."""
from pathlib import Path

import numpy as np

from . import Row, call, tensor

# fixture case -> what the row is called
CASES = {"k22": "Kandinsky 2.2: image embeds, simple cross-attention",
         "k22_hint": "Kandinsky 2.2 ControlNet: image + hint",
         "k21": "Kandinsky 2.1: text + image embeds",
         "if": "IF-style: pooled text, class labels, group-normed context (silu)",
         "unclip": "unCLIP decoder: identity class labels, masked context"}


def _row(fix: Path, case: str, title: str) -> Row:
    def run(mode, dtype):
        import msdiff
        d = dict(np.load(fix / f"{case}.npz"))
        net = msdiff.load(fix / case, dtype=dtype)
        added = tuple(k for k in ("image_embeds", "text_embeds", "hint") if k in d)

        def f(sample, t, context, values, class_labels, attention_mask):
            return net(sample, t, context, added_cond_kwargs=dict(zip(added, values)) if added else None,
                       class_labels=class_labels, attention_mask=attention_mask)

        args = (tensor(d["sample"]), tensor(d["timestep"]), tensor(d.get("encoder_hidden_states")),
                tuple(tensor(d[k]) for k in added), tensor(d.get("class_labels")), tensor(d.get("attention_mask")))
        return [(call(f, mode, *args)[0], d["out"])]

    return Row(f"UNet2DConditionModel ({title}; tiny)", "net", run)


def rows(fix: Path) -> list:
    return [_row(fix, case, title) for case, title in CASES.items() if (fix / f"{case}.npz").is_file()]
