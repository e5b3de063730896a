"""Composed-conditioning rows: ControlNet img2img / inpainting (SD, SD-XL), MultiControlNet, MultiAdapter and a
ControlNet with a T2I-Adapter, replaying the diffusers calls recorded in tests/fixtures/control_mix (fp16 cells
also show diffusers' own fp16 error where control_mix/fp16.npz has it: the hand-composed ControlNet + T2I-Adapter)."""
import json
from pathlib import Path

import numpy as np

from . import Row, diffusers_fp16

_RECIPES = {"StableDiffusionControlNetImg2ImgPipeline": "controlnet_img2img",
            "StableDiffusionXLControlNetImg2ImgPipeline": "controlnet_img2img",
            "StableDiffusionControlNetInpaintPipeline": "controlnet_inpaint",
            "StableDiffusionXLControlNetInpaintPipeline": "controlnet_inpaint",
            "StableDiffusionControlNetPipeline": "controlnet", "StableDiffusionAdapterPipeline": "t2i_adapter",
            "ControlNet + T2I-Adapter (composed)": "controlnet"}
_PIPELINES = {}


def _pipeline(fixtures: Path, folder: str, dtype: str):
    import msdiff
    if (folder, dtype) not in _PIPELINES:
        _PIPELINES[folder, dtype] = msdiff.load_pipeline(fixtures / folder, dtype=dtype)
    return _PIPELINES[folder, dtype]


def case_call(fix: Path, name: str, dtype: str = "float32") -> tuple:
    """(recipe, components, kwargs, expected) replaying the recorded call `name` of control_mix/cases.json."""
    import PIL.Image
    import msdiff
    from msdiff import recipes
    meta = json.loads((fix / "cases.json").read_text())[name]
    d = dict(np.load(fix / f"{name}.npz"))
    folder, twice = meta["folder"].split("*")[0], meta["folder"].endswith("*2")
    components = _pipeline(fix.parent, folder, dtype)
    kwargs = dict(meta["args"], output_type="np", noise=[d[f"noise_{i}"] for i in range(meta["num_noise"])])

    def pil(key):
        return PIL.Image.fromarray(d[key])

    if "latents" in d:
        kwargs["latents"] = d["latents"]
    for key in ("image", "control_image", "mask_image"):
        if key in d:
            kwargs[key] = pil(key)
    if "image_0" in d:
        kwargs["image"] = [pil("image_0"), pil("image_1")]
        part = "controlnet" if meta["pipeline_class"].endswith("ControlNetPipeline") else "adapter"
        kwargs[part] = [components.extra[part]] * 2
    if meta.get("controlnet"):
        kwargs.update(image=pil("control_image"), controlnet=msdiff.load(fix.parent / meta["controlnet"], dtype=dtype),
                      adapter=components.extra["adapter"], adapter_image=pil("adapter_image"),
                      sampler=meta["scheduler"])
        kwargs.pop("control_image")
    assert twice == ("image_0" in d)
    return getattr(recipes, _RECIPES[meta["pipeline_class"]]), components, kwargs, d["expected"]


def rows(fix: Path) -> list:
    if not (fix / "cases.json").is_file():
        return []
    out = []
    for name, meta in sorted(json.loads((fix / "cases.json").read_text()).items()):
        def run(mode, dtype, name=name):
            recipe, components, kwargs, expected = case_call(fix, name, dtype)
            return [(recipe(components, mode=mode, **kwargs), expected, diffusers_fp16(fix, name, dtype))]

        label = {"sd_multi_controlnet": "StableDiffusionControlNetPipeline + MultiControlNetModel",
                 "sd_multi_adapter": "StableDiffusionAdapterPipeline + MultiAdapter"}.get(name, meta["pipeline_class"])
        out.append(Row(f"{label} ({name})", "recipe", run))
    return out
