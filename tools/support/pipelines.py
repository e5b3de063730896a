"""SD / SD-XL / LCM pipeline rows: the recorded diffusers calls of tests/fixtures/pipelines/cases.json."""
import json
from pathlib import Path

import numpy as np

from . import Row, diffusers_fp16, fp16_seeds


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
    from msdiff import recipes
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


def rows(fix: Path) -> list:
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

            def run_one(inputs):  # one seed's draws (fp16_seeds); {} = the recorded case
                seed = dict(kwargs, **{k: v for k, v in inputs.items() if k == "latents"})
                if inputs:
                    seed["noise"] = [inputs[f"noise_{i}"] for i in range(case["num_noise"])]
                return np.asarray(recipe(_PIPELINES[case["folder"], dtype], mode=mode, **seed))

            seeds = fp16_seeds(fix, name, dtype, run_one)
            if seeds is not None:
                return seeds
            return [(run_one({}), expected, diffusers_fp16(fix, name, dtype))]

        rows.append(Row(f"{case['pipeline_class']} ({name})", "recipe", run))
    return rows
