"""LoRA rows: the tiny SD / SD-XL UNet and text encoders with two adapters loaded (msdiff.io.lora); IP-Adapter rows:
the diffusers pipeline calls recorded in tests/fixtures/ip_adapter (base and plus, alone, with img2img and with a
ControlNet) replayed through the recipes (msdiff.io.ip_adapter, msdiff.recipes.ip_adapter)."""
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
    return out + ip_rows(fix.parent / "ip_adapter")


_IP_RECIPES = {"StableDiffusionPipeline": "text_to_image", "StableDiffusionXLPipeline": "text_to_image",
               "StableDiffusionImg2ImgPipeline": "image_to_image", "StableDiffusionControlNetPipeline": "controlnet"}


def ip_case_call(fix: Path, name: str, dtype: str = "float32") -> tuple:
    """(recipe, components, kwargs, expected) replaying the recorded IP-Adapter call `name` of ip_adapter/cases.json
    (a freshly loaded pipeline with the case's adapter and scale)."""
    import PIL.Image
    import msdiff
    from msdiff import recipes
    from msdiff.io.ip_adapter import load_ip_adapter

    meta = json.loads((fix / "cases.json").read_text())[name]
    d = dict(np.load(fix / f"{name}.npz"))
    components = msdiff.load_pipeline(fix.parent / meta["folder"], dtype=dtype)
    load_ip_adapter(components, fix / meta["adapter"], scale=meta["scale"])
    kwargs = dict(meta["args"], output_type="np", noise=[d[f"noise_{i}"] for i in range(meta["num_noise"])])
    for key in ("image", "ip_adapter_image"):
        if key in d:
            kwargs[key] = PIL.Image.fromarray(d[key])
    if "latents" in d:
        kwargs["latents"] = d["latents"]
    return getattr(recipes, _IP_RECIPES[meta["pipeline_class"]]), components, kwargs, d["expected"]


def ip_rows(fix: Path) -> list:
    if not (fix / "cases.json").is_file():
        return []
    out = []
    for name, meta in sorted(json.loads((fix / "cases.json").read_text()).items()):
        def run(mode, dtype, name=name):
            recipe, components, kwargs, expected = ip_case_call(fix, name, dtype)
            return [(recipe(components, mode=mode, **kwargs), expected)]

        kind = "plus" if "plus" in meta["adapter"] else "base"
        out.append(Row(f"{meta['pipeline_class']} + IP-Adapter {kind} ({name})", "recipe", run))
    return out
