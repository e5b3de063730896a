"""The measured support matrix: every net / recipe with a diffusers fixture, in four modes.

`python -m msdiff.support` (or `msdiff support`) runs each row in PyNative and graph mode
(`mindspore.jit`), fp16 and fp32, compares with the diffusers fp32 output stored in the
fixtures, and writes docs/SUPPORT.md. A cell is ✅ with the measured relative L2 error when it
is within the threshold (fp32 1e-5, fp16 5e-3), else ❌ with the reason.
"""
import argparse
import json
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

MODES = (("pynative", "float16"), ("pynative", "float32"), ("graph", "float16"), ("graph", "float32"))
HEADERS = ("PyNative FP16", "PyNative FP32", "Graph FP16", "Graph FP32")
THRESHOLD = {"float32": 1e-5, "float16": 5e-3}


@dataclass(frozen=True)
class Row:
    """One line of the matrix: run(mode, dtype) -> list of (got, reference) array pairs."""

    name: str
    family: str
    run: Callable[[str, str], list]


def rel_l2(pairs) -> float:
    """Largest relative L2 error over (got, reference) pairs, in float64."""
    worst = 0.0
    for got, ref in pairs:
        got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
        if got.shape != ref.shape:
            raise ValueError(f"shape {got.shape} != reference {ref.shape}")
        worst = max(worst, float(np.linalg.norm(got - ref) / np.linalg.norm(ref)))
    return worst


def _call(fn, mode: str, *args):
    """fn(*args), compiled with mindspore.jit in graph mode; Tensor outputs to float32 numpy."""
    import mindspore as ms
    if mode == "graph":
        fn = ms.jit(fn)
    out = fn(*args)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.astype(ms.float32).asnumpy() for o in outs]


def _tensor(a):
    import mindspore as ms
    return None if a is None else ms.Tensor(a)


# Rows, one builder per fixture area (each reads only its own fixture folder).

def _unet_rows(fix: Path) -> list:
    import msdiff
    rows = []
    for name in ("sd1", "sd2", "sdxl", "inpaint", "lcm"):
        if not (fix / f"{name}.npz").is_file():
            continue

        def run(mode, dtype, name=name):
            d = dict(np.load(fix / f"{name}.npz"))
            net = msdiff.load(fix / name, dtype=dtype)
            extra = [_tensor(d.get(k)) for k in ("text_embeds", "time_ids", "timestep_cond")]

            def f(sample, t, ctx, text_embeds, time_ids, timestep_cond):
                return net(sample, t, ctx, text_embeds, time_ids, timestep_cond)

            got = _call(f, mode, _tensor(d["sample"]), _tensor(d["timestep"]),
                        _tensor(d["encoder_hidden_states"]), *extra)
            return [(got[0], d["out"])]

        rows.append(Row(f"UNet2DConditionModel ({name})", "net", run))
    return rows


def _vae_rows(fix: Path) -> list:
    import msdiff
    if not (fix / "vae.npz").is_file():
        return []

    def run(mode, dtype):
        d = dict(np.load(fix / "vae.npz"))
        vae = msdiff.load(fix / "vae", dtype=dtype)

        def f(image, latent):
            mean, logvar = vae.encode(image)
            return mean, logvar, vae.decode(latent)

        mean, logvar, decoded = _call(f, mode, _tensor(d["image"]), _tensor(d["latent"]))
        return [(mean, d["mean"]), (logvar, d["logvar"]), (decoded, d["decoded"])]

    return [Row("AutoencoderKL (encode + decode)", "net", run)]


def _clip_rows(fix: Path) -> list:
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

            last, pooled = _call(f, mode, _tensor(d["input_ids"].astype(np.int32)))
            return [(last, d["last_hidden_state"]), (pooled, d["pooled"])]

        rows.append(Row(cls, "net", run))
    return rows


def _unet_2d_rows(fix: Path) -> list:
    import msdiff
    rows = []
    for name in ("uncond", "class_cond", "fourier", "ncsnpp", "cd", "class_timestep", "class_identity"):
        if not (fix / name / "io.npz").is_file():
            continue

        def run(mode, dtype, name=name):
            d = dict(np.load(fix / name / "io.npz"))
            net = msdiff.load(fix / name, dtype=dtype)

            def f(sample, t, labels):
                return net(sample, t, labels)

            got = _call(f, mode, _tensor(d["sample"]), _tensor(d["timestep"]), _tensor(d.get("class_labels")))
            return [(got[0], d["out"])]

        rows.append(Row(f"UNet2DModel ({name})", "net", run))
    return rows


_RECIPES = {
    "StableDiffusionPipeline": "text_to_image", "StableDiffusionXLPipeline": "text_to_image",
    "StableDiffusionImg2ImgPipeline": "image_to_image", "StableDiffusionXLImg2ImgPipeline": "image_to_image",
    "StableDiffusionInpaintPipeline": "inpaint", "StableDiffusionXLInpaintPipeline": "inpaint",
    "StableDiffusionInstructPix2PixPipeline": "instruct_pix2pix",
    "LatentConsistencyModelPipeline": "lcm_text_to_image",
    "LatentConsistencyModelImg2ImgPipeline": "lcm_image_to_image",
}
_PIPELINES = {}


def pipeline_call(fix: Path, name: str, case: dict):
    """(recipe, kwargs, expected) replaying the recorded diffusers pipeline call `name` of cases.json."""
    import PIL.Image
    from mindspore import Tensor
    from . import recipes
    z = dict(np.load(fix / f"{name}.npz"))
    kwargs = {k: tuple(v) if isinstance(v, list) and k not in ("prompt", "negative_prompt") else v
              for k, v in case["args"].items()}
    if "latents" in z:
        kwargs["latents"] = z["latents"]
    if "image" in z:
        kwargs["image"] = PIL.Image.fromarray(z["image"]) if z["image"].dtype == np.uint8 else Tensor(z["image"])
    if "mask_image" in z:
        kwargs["mask_image"] = PIL.Image.fromarray(z["mask_image"])
    kwargs["noise"] = [z[f"noise_{i}"] for i in range(case["num_noise"])]
    if case["scheduler"]:
        kwargs["sampler"] = case["scheduler"]
    return getattr(recipes, _RECIPES[case["pipeline_class"]]), kwargs, z["expected"]


def _ldm_rows(fix: Path) -> list:
    import msdiff
    rows = []
    if (fix / "vq.npz").is_file():
        def run_vq(mode, dtype):
            d = dict(np.load(fix / "vq.npz"))
            vq = msdiff.load(fix / "vq", dtype=dtype)

            def f(image, h):
                return vq.encode(image), vq.decode(h), vq.decode(h, force_not_quantize=True)

            enc, dec, dec_nq = _call(f, mode, _tensor(d["image"]), _tensor(d["h"]))
            return [(enc, d["h"]), (dec, d["decoded"]), (dec_nq, d["decoded_nq"])]

        rows.append(Row("VQModel (encode + decode)", "net", run_vq))
    if (fix / "bert.npz").is_file():
        def run_bert(mode, dtype):
            d = dict(np.load(fix / "bert.npz"))
            bert = msdiff.load(fix / "bert", dtype=dtype)

            def f(ids, mask):
                return bert(ids), bert(ids, mask)

            hidden, masked = _call(f, mode, _tensor(d["input_ids"]), _tensor(d["attention_mask"]))
            return [(hidden, d["hidden"]), (masked, d["hidden_masked"])]

        rows.append(Row("LDMBertModel", "net", run_bert))
    if (fix / "cases.json").is_file():
        cases = json.loads((fix / "cases.json").read_text())

        def run_t2i(mode, dtype):
            from .recipes.ldm import ldm_text_to_image
            d = dict(np.load(fix / "pipelines.npz"))
            images = ldm_text_to_image(msdiff.load_pipeline(fix / "ldm_text2im", dtype=dtype), d["input_ids"],
                                       latents=d["t2i_latents"], negative_prompt_ids=d["empty_ids"],
                                       output_type="np", mode=mode, **cases["t2i"])
            return [(images, d["t2i_images"])]

        def run_sr(mode, dtype):
            from .recipes.ldm import ldm_super_resolution
            d = dict(np.load(fix / "pipelines.npz"))
            images = ldm_super_resolution(msdiff.load_pipeline(fix / "ldm_super_resolution", dtype=dtype),
                                          _tensor(d["sr_image"]), latents=d["sr_latents"],
                                          noise=list(d["sr_eta_noise"]), output_type="np", mode=mode,
                                          **cases["sr_eta"])
            return [(images, d["sr_eta_images"])]

        rows += [Row("LDMTextToImagePipeline (t2i)", "recipe", run_t2i),
                 Row("LDMSuperResolutionPipeline (sr_eta)", "recipe", run_sr)]
    return rows


def _consistency_rows(fix: Path) -> list:
    if not (fix / "consistency.json").is_file():
        return []
    meta = json.loads((fix / "consistency.json").read_text())
    rows = []
    for name, run_args in sorted(meta["runs"].items()):
        def run(mode, dtype, name=name, run_args=run_args):
            from .io import Components, load
            from .recipes.consistency import consistency
            ref = dict(np.load(fix / "consistency.npz"))
            components = Components(unet=load(fix / run_args.get("unet", "class_cond"), dtype=dtype),
                                    scheduler=dict(meta["scheduler"], _class_name="CMStochasticIterativeScheduler"))
            noise = [ref[k] for k in sorted(k for k in ref if k.startswith(name + "_noise_"))]
            steps = {k: run_args[k] for k in ("num_inference_steps", "timesteps") if k in run_args}
            images = consistency(components, batch_size=2, class_labels=run_args["class_labels"], noise=noise,
                                 output_type="np", mode=mode, **steps)
            return [(images, ref[name])]

        rows.append(Row(f"ConsistencyModelPipeline ({name})", "recipe", run))
    return rows


FIR_BLOCKS = {  # name in unet_2d/fir_blocks.npz -> (class name, args): diffusers' FIR blocks, tiny
    "fir_up": ("FirUpsample2D", (8,), {"use_conv": False}),
    "fir_up_conv": ("FirUpsample2D", (8, 6), {"use_conv": True}),
    "fir_down": ("FirDownsample2D", (8,), {"use_conv": False}),
    "fir_down_conv": ("FirDownsample2D", (8, 6), {"use_conv": True}),
    "resnet_fir_up": ("FirUpResnetBlock2D", (8, 6, 16), {"groups": 2}),
    "resnet_fir_down": ("FirDownResnetBlock2D", (8, 6, 16), {"groups": 2}),
}


def fir_block(ref: dict, name: str, dtype):
    """The FIR block `name` with the weights stored in the fir_blocks fixture, in `dtype`."""
    from mindspore import Tensor
    from .blocks import unet_2d_model_blocks as blocks
    cls, args, kwargs = FIR_BLOCKS[name]
    block = getattr(blocks, cls)(*args, dtype=dtype, **kwargs)
    params = dict(block.parameters_and_names())
    stored = sorted(k[len(name) + 1:] for k in ref if k.startswith(name + ".") and not k.endswith(".out"))
    if sorted(params) != stored:
        raise ValueError(f"{name}: block parameters {sorted(params)} != fixture {stored}")
    for key, p in params.items():
        p.set_data(Tensor(ref[f"{name}.{key}"]).astype(dtype))
    block.set_train(False)
    return block


def _fir_rows(fix: Path) -> list:
    if not (fix / "fir_blocks.npz").is_file():
        return []
    rows = []
    for name, (cls, _, kwargs) in FIR_BLOCKS.items():
        def run(mode, dtype, name=name):
            import mindspore as ms
            ref = dict(np.load(fix / "fir_blocks.npz"))
            block = fir_block(ref, name, getattr(ms, dtype))

            def f(x, temb):
                return block(x, temb) if name.startswith("resnet") else block(x)

            return [(_call(f, mode, _tensor(ref["x"]).astype(getattr(ms, dtype)),
                           _tensor(ref["temb"]).astype(getattr(ms, dtype)))[0], ref[name + ".out"])]

        conv = " with conv" if kwargs.get("use_conv") else ""
        rows.append(Row(f"{cls}{conv} ({name})", "block", run))
    return rows


UNCONDITIONAL_CASES = {  # name in unet_2d/pipelines.npz -> (scheduler class, sampler, steps, eta)
    "ddpm": ("DDPMScheduler", None, 10, 0.0), "ddim": ("DDIMScheduler", "ddim", 8, 0.0),
    "ddim_eta": ("DDIMScheduler", "ddim", 8, 0.5)}


def unconditional_case(fix: Path, name: str, dtype: str = "float32"):
    """(components, kwargs, expected) replaying the recorded DDPMPipeline / DDIMPipeline call `name`."""
    from .io import Components, load
    class_name, sampler, steps, eta = UNCONDITIONAL_CASES[name]
    config = dict(json.loads((fix / "schedulers.json").read_text())[name], _class_name=class_name)
    ref = np.load(fix / "pipelines.npz")
    components = Components(unet=load(fix / "uncond", dtype=dtype), scheduler=config)
    kwargs = dict(batch_size=2, num_inference_steps=steps, sampler=sampler, eta=eta,
                  noise=list(ref[name + "_noise"]), output_type="np")
    return components, kwargs, ref[name]


def _unconditional_rows(fix: Path) -> list:
    if not (fix / "pipelines.npz").is_file():
        return []
    rows = []
    for name, (cls, *_) in UNCONDITIONAL_CASES.items():
        def run(mode, dtype, name=name):
            from .recipes.unconditional import unconditional
            components, kwargs, expected = unconditional_case(fix, name, dtype)
            return [(unconditional(components, mode=mode, **kwargs), expected)]

        pipeline = "DDPMPipeline" if cls == "DDPMScheduler" else "DDIMPipeline"
        rows.append(Row(f"{pipeline} ({name})", "recipe", run))
    return rows


def _pipeline_rows(fix: Path) -> list:
    cases_file = fix / "cases.json"
    if not cases_file.is_file():
        return []
    rows = []
    for name, case in sorted(json.loads(cases_file.read_text()).items()):
        def run(mode, dtype, name=name, case=case):
            import msdiff
            if (case["folder"], dtype) not in _PIPELINES:
                _PIPELINES[case["folder"], dtype] = msdiff.load_pipeline(fix / case["folder"], dtype=dtype)
            recipe, kwargs, expected = pipeline_call(fix, name, case)
            return [(np.asarray(recipe(_PIPELINES[case["folder"], dtype], mode=mode, **kwargs)), expected)]

        rows.append(Row(f"{case['pipeline_class']} ({name})", "recipe", run))
    return rows


def _op_rows(_fix: Path) -> list:
    """The ops the seed table marks ❌ in fp16 (GroupNorm, softmax/bmm, FIR), against float64 numpy."""
    import mindspore as ms
    from . import ops
    rng = np.random.default_rng(0)
    x = (300.0 + 20.0 * rng.standard_normal((2, 32, 16, 16))).astype(np.float32)
    w, b = rng.standard_normal(32).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    xg = x.astype(np.float64).reshape(2, 8, -1)
    gn_ref = ((xg - xg.mean(-1, keepdims=True)) / np.sqrt(xg.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
    gn_ref = gn_ref * w.reshape(1, -1, 1, 1) + b.reshape(1, -1, 1, 1)
    q = (4.0 * rng.standard_normal((2, 4, 64, 16))).astype(np.float32)
    s = np.einsum("bhnd,bhmd->bhnm", q.astype(np.float64), q.astype(np.float64)) / 4.0
    p = np.exp(s - s.max(-1, keepdims=True))
    att_ref = np.einsum("bhnm,bhmd->bhnd", p / p.sum(-1, keepdims=True), q.astype(np.float64))
    k = np.array([1.0, 3.0, 3.0, 1.0])
    k2 = np.outer(k, k) / np.outer(k, k).sum()
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 2), (1, 2)))
    fir_ref = sum(xp[:, :, i:i + 16:2, j:j + 16:2] * k2[3 - i, 3 - j] for i in range(4) for j in range(4))

    def case(fn, args, ref):
        def run(mode, dtype):
            t = [ms.Tensor(a).astype(getattr(ms, dtype)) if isinstance(a, np.ndarray) else a for a in args]
            return [(_call(fn, mode, *t)[0], ref)]
        return run

    def gn(x, w, b):
        return ops.group_norm(x, 8, w, b, 1e-5)

    def att(q):
        return ops.softmax_bmm_attention(q, q, q)

    def fir(x):
        return ops.downsample_fir(x, kernel=(1, 3, 3, 1), factor=2)

    return [Row("group_norm (activations ~300)", "op vs float64", case(gn, (x, w, b), gn_ref)),
            Row("softmax_bmm_attention", "op vs float64", case(att, (q,), att_ref)),
            Row("downsample_fir (FIR conv)", "op vs float64", case(fir, (x,), fir_ref))]


def _conditioned_pipeline_rows(fix: Path, cases: dict, recipe: str) -> list:
    """Recipe rows of the condition-image pipelines (ControlNet, T2I-Adapter): each case's recorded
    arguments, condition image, latents and noise; an "adapter" entry names a separate adapter folder."""
    rows = []
    for name, meta in sorted(cases.items()):
        def run(mode, dtype, name=name, meta=meta):
            import importlib

            import PIL.Image
            import msdiff
            fn = getattr(importlib.import_module(f"msdiff.recipes.{recipe}"), recipe)
            d = dict(np.load(fix / f"{name}.npz"))
            args = {k: v for k, v in meta["args"].items() if k != "output_type"}
            args.update(image=PIL.Image.fromarray(d["image"]), latents=d["latents"], output_type="np", mode=mode,
                        noise=[d[f"noise_{i}"] for i in range(meta["num_noise"])])
            if meta.get("adapter"):
                args["adapter"] = msdiff.load(fix / meta["adapter"], dtype=dtype)
            return [(fn(msdiff.load_pipeline(fix / meta["folder"], dtype=dtype), **args), d["expected"])]

        rows.append(Row(f"{meta['pipeline_class']} ({name})", "recipe", run))
    return rows


def _controlnet_rows(fix: Path) -> list:
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

            get = (lambda k: _tensor(d.get(f"{name}:{k}")))
            cond = _tensor(d[f"{name}:controlnet_cond"].astype(np.float32) / np.float32(255.0))
            got = _call(f, mode, get("sample"), get("timestep"), get("encoder_hidden_states"), cond,
                        get("text_embeds"), get("time_ids"))
            refs = [d[f"{name}:down_{i}"] for i in range(meta["num_down"])] + [d[f"{name}:mid"]]
            return list(zip(got, refs))

        rows.append(Row(f"ControlNetModel ({name})", "net", run))
    return rows + _conditioned_pipeline_rows(fix, cases["pipelines"], "controlnet")


def _t2i_adapter_rows(fix: Path) -> list:
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

            got = _call(f, mode, _tensor(d[f"{name}:image"].astype(np.float32) / np.float32(255.0)))
            return list(zip(got, [d[f"{name}:feature_{i}"] for i in range(meta["num_features"])]))

        rows.append(Row(f"T2IAdapter ({name})", "net", run))
    for name, meta in sorted(cases["nets"].items()):
        if not name.startswith("unet_"):
            continue

        def run(mode, dtype, folder=name[len("unet_"):], meta=meta):
            d, nets = dict(np.load(fix / "unet.npz")), dict(np.load(fix / "nets.npz"))
            unet = msdiff.load(fix / folder / "unet", dtype=dtype)
            n = cases["nets"][meta["case"]]["num_features"]
            features = tuple(_tensor(nets[f"{meta['case']}:feature_{i}"]) * meta["scale"] for i in range(n))

            def f(x, t, ctx, te, ids, features):
                return unet(x, t, ctx, te, ids, None, None, None, features)

            get = (lambda k: _tensor(d.get(f"{folder}:{k}")))
            got = _call(f, mode, get("sample"), get("timestep"), get("encoder_hidden_states"), get("text_embeds"),
                        get("time_ids"), features)
            return [(got[0], d[f"{folder}:out"])]

        rows.append(Row(f"UNet2DConditionModel + T2I-Adapter features ({name[len('unet_'):]})", "net", run))
    return rows + _conditioned_pipeline_rows(fix, cases["pipelines"], "t2i_adapter")


def _dit_rows(fix: Path) -> list:
    if not (fix / "cases.json").is_file():
        return []
    import msdiff
    rows = []
    for tag, folder in (("pipe", "pipeline/transformer"), ("small", "small")):
        def run(mode, dtype, tag=tag, folder=folder):
            d = dict(np.load(fix / "net.npz"))
            net = msdiff.load(fix / folder, dtype=dtype)

            def f(sample, t, labels):
                return net(sample, t, labels)

            t, y = _tensor(d[f"{tag}_timestep"]), _tensor(d[f"{tag}_class_labels"].astype(np.int32))
            return [(_call(f, mode, _tensor(d[f"{tag}_{x}"]), t, y)[0], d[f"{tag}_{o}"])
                    for x, o in (("sample", "out"), ("big", "out_12"))]

        rows.append(Row(f"DiTTransformer2DModel ({tag})", "net", run))
    for name, case in sorted(json.loads((fix / "cases.json").read_text()).items()):
        def run(mode, dtype, name=name, case=case):
            import msdiff
            from .recipes.dit import dit
            ref = dict(np.load(fix / f"{name}.npz"))
            images = dit(msdiff.load_pipeline(fix / "pipeline", dtype=dtype), case["class_labels"],
                         guidance_scale=case["guidance_scale"], num_inference_steps=case["num_inference_steps"],
                         noise=[ref["latents"]], sampler=case["scheduler"], mode=mode, output_type="np")
            return [(images, ref["expected"])]

        rows.append(Row(f"DiTPipeline ({name})", "recipe", run))
    return rows


def _pixart_rows(fix: Path) -> list:
    if not (fix / "cases.json").is_file():
        return []
    import msdiff
    rows = []
    for tag in ("t5", "t5_relu"):
        def run(mode, dtype, tag=tag):
            d = dict(np.load(fix / "t5.npz"))
            net = msdiff.load(fix / tag, dtype=dtype)

            def f(ids, mask):
                return net(ids, mask)

            ids, mask = _tensor(d["input_ids"]), _tensor(d["attention_mask"])
            return [(_call(f, mode, ids, mask)[0], d[f"{tag}_out"])]

        rows.append(Row(f"T5EncoderModel ({tag})", "net", run))
    for tag in ("cond", "small"):
        def run(mode, dtype, tag=tag):
            d = dict(np.load(fix / "net.npz"))
            net = msdiff.load(fix / tag, dtype=dtype)

            def f(sample, t, context, mask, resolution, aspect_ratio):
                return net(sample, t, context, mask, resolution, aspect_ratio)

            keys = ("timestep", "encoder_hidden_states", "encoder_attention_mask", "resolution", "aspect_ratio")
            rest = [_tensor(d[f"{tag}_{k}"]) for k in keys]
            return [(_call(f, mode, _tensor(d[f"{tag}_{x}"]), *rest)[0], d[f"{tag}_{o}"])
                    for x, o in (("sample", "out"), ("wide", "out_12"))]

        rows.append(Row(f"PixArtTransformer2DModel ({tag})", "net", run))
    cases = json.loads((fix / "cases.json").read_text())
    for name in ("cfg", "plain", "ddim_negative"):
        def run(mode, dtype, name=name, case=cases[name]):
            from .recipes.pixart import pixart
            ref = dict(np.load(fix / f"{name}.npz"))
            images = pixart(msdiff.load_pipeline(fix / "pipeline", dtype=dtype), case["prompt"],
                            negative_prompt=case["negative_prompt"], guidance_scale=case["guidance_scale"],
                            num_inference_steps=case["num_inference_steps"], height=case["height"],
                            width=case["width"], noise=[ref["latents"]], sampler=case["scheduler"], mode=mode,
                            output_type="np", use_resolution_binning=False)
            return [(images, ref["expected"])]

        rows.append(Row(f"PixArtAlphaPipeline ({name})", "recipe", run))
    return rows


AREAS = (("", _op_rows), ("sd_unet", _unet_rows), ("sd_vae", _vae_rows), ("clip", _clip_rows),
         ("unet_2d", _unet_2d_rows), ("unet_2d", _fir_rows), ("unet_2d", _unconditional_rows),
         ("unet_2d", _consistency_rows), ("ldm", _ldm_rows), ("pipelines", _pipeline_rows),
         ("controlnet", _controlnet_rows), ("t2i_adapter", _t2i_adapter_rows), ("dit", _dit_rows),
         ("pixart", _pixart_rows))


def rows(fixtures: Path) -> list:
    """Every row that has a fixture under `fixtures`."""
    return [row for area, build in AREAS for row in build(fixtures / area)]


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split())
    first = text.split(" ----")[0]
    return f"{type(e).__name__}: {first[:120]}"


def measure(row: Row) -> list:
    """The four cells of a row, as strings."""
    cells = []
    for mode, dtype in MODES:
        try:
            err = rel_l2(row.run(mode, dtype))
        except Exception as e:  # a failing cell is a result of the matrix, with its reason
            cells.append(f"❌ {_reason(e)}")
            continue
        if not np.isfinite(err):
            cells.append("❌ non-finite output")
        elif err <= THRESHOLD[dtype]:
            cells.append(f"✅ {err:.0e}")
        else:
            cells.append(f"❌ rel L2 {err:.1e} > {THRESHOLD[dtype]:.0e}")
    return cells


def render_row(row: Row, cells: list) -> str:
    """One markdown table line."""
    return f"| {row.name} | {row.family} | " + " | ".join(cells) + " |"


def render(lines: list) -> str:
    """The whole docs/SUPPORT.md text."""
    import mindspore as ms
    head = ["# msdiff support matrix", "",
            "Generated by `python -m msdiff.support` (do not edit by hand). Each cell compares msdiff with",
            "the diffusers 0.35.2 fp32 output stored in tests/fixtures: ✅ with the relative L2 error when it",
            "is within 1e-5 (fp32) / 5e-3 (fp16), ❌ with the reason otherwise. Graph = `mindspore.jit`.", "",
            f"Backend: MindSpore {ms.__version__}, device {ms.get_context('device_target')}, "
            f"{platform.machine()}.", "",
            "| Row | Kind | " + " | ".join(HEADERS) + " |",
            "|---|---|" + "---|" * len(HEADERS)]
    notes = ["", "fp16 cells run weights and activations in fp16 end to end (the VAE decodes in fp32, the",
             "recipes' default) and compare with diffusers' fp32 output. A single fp16 UNet call is within",
             "1-2e-3; recipe rows add the error of every step, and rows that return latents (`_end`) or",
             "blend masked latents (inpaint) are not clipped to the image range, so they can exceed 5e-3."]
    return "\n".join(head + lines + notes) + "\n"


def write_support(fixtures: Path, out: Path, only: Optional[list] = None) -> Path:
    """Measure every row (or the named ones, keeping the others from `out`) and write the table."""
    old = {}
    if only and out.is_file():
        for line in out.read_text().splitlines():
            if line.startswith("| ") and not line.startswith("| Row "):
                old[line.split(" | ")[0][2:]] = line
    lines = []
    for row in rows(fixtures):
        if only and row.name not in only:
            if row.name in old:
                lines.append(old[row.name])
            continue
        lines.append(render_row(row, measure(row)))
        print(lines[-1], file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(lines))
    return out


def main(argv=None) -> int:
    """Command-line entry: python -m msdiff.support [--fixtures DIR] [--out FILE] [--only ROW ...]."""
    p = argparse.ArgumentParser(prog="python -m msdiff.support", description=__doc__.splitlines()[0])
    p.add_argument("--fixtures", default="tests/fixtures")
    p.add_argument("--out", default="docs/SUPPORT.md")
    p.add_argument("--only", nargs="*", default=None)
    args = p.parse_args(argv)
    import mindspore as ms
    ms.runtime.launch_blocking()
    print(write_support(Path(args.fixtures), Path(args.out), args.only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
