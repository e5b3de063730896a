"""Rows of the Kandinsky / unCLIP nets (PriorTransformer, UnCLIPTextProjModel, MoVQ: VQModel with spatial norm), the
KandinskyV22Pipeline recipe, and (fixture area kandinsky2) the Kandinsky priors and 2.2 decoder variants, whose fp16
cells also show diffusers' own fp16 error (kandinsky2/fp16.npz)."""
import json
from pathlib import Path

import numpy as np

from . import Row, call, diffusers_fp16, tensor


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
        return [(got, d["expected"], diffusers_fp16(fix.parent / "kandinsky2", "k22_cfg", dtype))]

    return Row("KandinskyV22Pipeline (tiny, guidance 4, 2 images per embedding)", "recipe", run)


_LABELS = {"prior_cfg": "tiny, guidance 4, 2 per prompt, zero-image negative",
           "prior_negative": "tiny, guidance 3, negative prompt", "prior21": "tiny, 2 prompts, no guidance",
           "emb2emb": "tiny, strength 0.5, guidance 4", "interpolate": "tiny, V22 interpolate: a prompt and an image",
           "interpolate21": "tiny, 2.1 interpolate: a prompt and an image, 2 per prompt",
           "img2img": "tiny, strength 0.6, guidance 4, 2 per embedding", "inpaint": "tiny, 9-channel UNet, guidance 4",
           "controlnet": "tiny, image_hint UNet, guidance 4, 2 per embedding",
           "controlnet_img2img": "tiny, strength 0.5, guidance 4",
           "k21": "tiny, MultilingualCLIP, DDIM, guidance 4, 2 per prompt",
           "k21_img2img": "tiny, negative prompt, strength 0.6, guidance 5",
           "k21_inpaint": "tiny, 9-channel UNet, guidance 4"}


def _components21(fix2: Path, meta: dict, dtype: str):
    import msdiff
    from msdiff.io.pipeline import Components
    from msdiff.io.registry import tokenizer_class
    folder, unet = meta["unet"].rsplit("/", 1)
    movq = msdiff.load_pipeline(fix2.parent / "kandinsky" / "k22", dtype=dtype).extra["movq"]
    return Components(unet=msdiff.load(fix2.parent / folder, unet, dtype=dtype),
                      text_encoder=msdiff.load(fix2, "mclip", dtype=dtype),
                      tokenizer=tokenizer_class("XLMRobertaTokenizerFast").from_pretrained(fix2 / "xlmr_tokenizer"),
                      scheduler=meta["scheduler"], extra={"movq": movq})


def _k21_row(fix2: Path, name: str, meta: dict) -> Row:
    def run(mode, dtype):
        import importlib
        import PIL.Image
        k21 = importlib.import_module("msdiff.recipes.kandinsky21")
        recipe = getattr(k21, "kandinsky21" + name[len("k21"):])
        d = dict(np.load(fix2 / f"{name}.npz"))
        kw = dict(meta["args"], mode=mode, output_type="np", height=8, width=8)
        if "noise" in d:
            kw["noise"] = list(d["noise"])
        kw.update({k: d[k] for k in ("latents",) if k in d})
        kw.update({k: PIL.Image.fromarray(d[k]) for k in ("image", "mask_image") if k in d})
        got = recipe(_components21(fix2, meta, dtype), image_embeds=d["image_embeds"],
                     negative_image_embeds=d["negative_image_embeds"], **kw)
        return [(got, d["expected"], diffusers_fp16(fix2, name, dtype))]

    return Row(f"{meta['pipeline_class']} ({_LABELS[name]})", "recipe", run)


def _mclip(fix2: Path) -> Row:
    def run(mode, dtype):
        import msdiff
        d = dict(np.load(fix2 / "mclip.npz"))
        net = msdiff.load(fix2, "mclip", dtype=dtype)
        proj, last = call(net, mode, tensor(d["input_ids"].astype(np.int32)),
                          tensor(d["attention_mask"].astype(np.int32)))
        return [(proj, d["projected"]), (last, d["last_hidden_state"])]

    return Row("MultilingualCLIP (tiny XLM-RoBERTa + projection, 3 prompts)", "net", run)


def _prior_row(fix2: Path, name: str, meta: dict) -> Row:
    def run(mode, dtype):
        import PIL.Image
        import msdiff
        import importlib
        kp = importlib.import_module("msdiff.recipes.kandinsky_prior")
        d = dict(np.load(fix2 / f"{name}.npz"))
        c = msdiff.load_pipeline(fix2 / "prior", dtype=dtype)
        kw = dict(meta["args"], noise=list(d["noise"]), mode=mode, output_type="np")
        if name == "emb2emb":
            out = kp.kandinsky_prior_emb2emb(c, image=PIL.Image.fromarray(d["image"]), **kw)
        elif name.startswith("interpolate"):
            fn = kp.kandinsky_prior_interpolate if name == "interpolate" else kp.kandinsky21_prior_interpolate
            out = fn(c, ["a red cat", PIL.Image.fromarray(d["image"])], latents=d["latents"], **kw)
        else:
            out = kp.kandinsky_prior(c, latents=d["latents"], **kw)
        return [(getattr(out, k), d[k], diffusers_fp16(fix2, f"{name}:{k}", dtype))
                for k in ("image_embeds", "negative_image_embeds")]

    label = meta["pipeline_class"] + (".interpolate" if name.startswith("interpolate") else "")
    return Row(f"{label} ({_LABELS[name]})", "recipe", run)


def _decoder_row(fix2: Path, name: str, meta: dict) -> Row:
    def run(mode, dtype):
        import dataclasses
        import importlib
        import PIL.Image
        import msdiff
        decoders = importlib.import_module("msdiff.recipes.kandinsky_decoders")
        recipe = getattr(decoders, "kandinsky_v22_" + name)
        d = dict(np.load(fix2 / f"{name}.npz"))
        folder, unet = meta["unet"].rsplit("/", 1)
        c = dataclasses.replace(msdiff.load_pipeline(fix2.parent / "kandinsky" / "k22", dtype=dtype),
                                unet=msdiff.load(fix2.parent / folder, unet, dtype=dtype))
        kw = dict(meta["args"], noise=list(d["noise"]), mode=mode, output_type="np", height=8, width=8)
        kw.update({k: d[k] for k in ("latents", "hint") if k in d})
        kw.update({k: PIL.Image.fromarray(d[k]) for k in ("image", "mask_image") if k in d})
        got = recipe(c, d["image_embeds"], negative_image_embeds=d["negative_image_embeds"], **kw)
        return [(got, d["expected"], diffusers_fp16(fix2, name, dtype))]

    return Row(f"{meta['pipeline_class']} ({_LABELS[name]})", "recipe", run)


def rows(fix: Path) -> list:
    out = []
    for name, make in (("prior", _prior), ("text_proj", _text_proj), ("movq", _movq), ("k22_cfg", _k22)):
        if (fix / f"{name}.npz").is_file():
            out.append(make(fix))
    fix2 = fix.parent / "kandinsky2"
    if (fix2 / "cases.json").is_file():
        for name, meta in json.loads((fix2 / "cases.json").read_text()).items():
            kind = _prior_row if not meta["unet"] else _k21_row if name.startswith("k21") else _decoder_row
            out.append(kind(fix2, name, meta))
        out.append(_mclip(fix2))
    return out
