"""Rows of the Kandinsky / unCLIP nets: PriorTransformer, UnCLIPTextProjModel and MoVQ (VQModel, spatial norm)."""
from pathlib import Path

import numpy as np

from . import Row, call, tensor


def _prior(fix: Path):
    def run(mode, dtype):
        import msdiff
        d = dict(np.load(fix / "prior.npz"))
        net = msdiff.load(fix / "prior", dtype=dtype)
        keys = ("hidden_states", "timestep", "proj_embedding", "encoder_hidden_states", "attention_mask")
        return [(call(net, mode, *[tensor(d[f"masked:{k}"]) for k in keys])[0], d["masked:out"])]

    return Row("PriorTransformer (tiny, text-masked)", "net", run)


def _text_proj(fix: Path):
    def run(mode, dtype):
        import msdiff
        d = dict(np.load(fix / "text_proj.npz"))
        net = msdiff.load(fix / "text_proj", dtype=dtype)

        def f(image, prompt, hidden):
            return net(image, prompt, hidden, True)

        keys = ("image_embeddings", "prompt_embeds", "text_encoder_hidden_states")
        context, time = call(f, mode, *[tensor(d[k]) for k in keys])
        return [(context, d["context"]), (time, d["time"])]

    return Row("UnCLIPTextProjModel (tiny)", "net", run)


def _movq(fix: Path):
    def run(mode, dtype):
        import msdiff
        d = dict(np.load(fix / "movq.npz"))
        net = msdiff.load(fix / "movq", dtype=dtype)

        def f(z):
            return net.decode(z, force_not_quantize=True)

        return [(call(f, mode, tensor(d["latents"]))[0], d["decoded"])]

    return Row("VQModel (MoVQ: tiny, spatial norm, decode)", "net", run)


def _k22(fix: Path):
    def run(mode, dtype):
        import msdiff
        from msdiff.recipes.kandinsky import kandinsky_v22
        d = dict(np.load(fix / "k22_cfg.npz"))
        got = kandinsky_v22(msdiff.load_pipeline(fix / "k22", dtype=dtype), d["image_embeds"],
                            d["negative_image_embeds"], height=8, width=8, num_inference_steps=3, guidance_scale=4.0,
                            num_images_per_prompt=2, latents=d["latents"], noise=list(d["noise"]),
                            mode="graph" if mode == "graph" else "pynative", output_type="np")
        return [(got, d["expected"])]

    return Row("KandinskyV22Pipeline (tiny, guidance 4, 2 images per embedding)", "recipe", run)


def rows(fix: Path) -> list:
    out = []
    for name, make in (("prior", _prior), ("text_proj", _text_proj), ("movq", _movq), ("k22_cfg", _k22)):
        if (fix / f"{name}.npz").is_file():
            out.append(make(fix))
    return out
