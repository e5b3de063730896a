"""Video pipeline rows: AnimateDiffPipeline, AnimateDiffVideoToVideoPipeline, StableVideoDiffusionPipeline and
I2VGenXLPipeline on the tiny folders of tools/fixtures/video_pipelines.py (fixture area video_pipelines).

The folders hold each net's keys.json instead of its weights; `folder` writes a complete copy (the seeded
fp16-rounded weights of tools/fixtures/video.py `seeded_weights` as the safetensors file diffusers saved) once per
process. tests/test_video_pipelines.py uses these loaders and calls too.
"""
import json
import shutil
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import ROOT, Row, diffusers_fp16, fp16_seeds

AREA = "video_pipelines"
_TMP = Path(tempfile.gettempdir()) / "msdiff_video_pipelines"
RECIPES = {"AnimateDiffPipeline": "animatediff", "AnimateDiffVideoToVideoPipeline": "animatediff_video_to_video",
           "StableVideoDiffusionPipeline": "stable_video_diffusion", "I2VGenXLPipeline": "i2vgen_xl"}


def _weights(sub: Path, keys: dict) -> dict:
    """The seeded weights of one net folder (the assembled UNetMotionModel: each key from the UNet's or the
    adapter's seed) plus its recorded buffers."""
    if str(ROOT / "tools") not in sys.path:
        sys.path.insert(0, str(ROOT / "tools"))
    from fixtures.video import seeded_weights

    seed, shapes = keys["seed"], keys["shapes"]
    if isinstance(seed, list):
        unet = json.loads((sub.parent / "sd_unet" / "keys.json").read_text())["shapes"]
        out = seeded_weights({k: v for k, v in shapes.items() if k in unet}, seed[0])
        out.update(seeded_weights({k: v for k, v in shapes.items() if k not in unet}, seed[1]))
    else:
        out = seeded_weights(shapes, seed)
    if (sub / "buffers.npz").is_file():
        with np.load(sub / "buffers.npz") as f:
            out.update({k: f[k] for k in f.files})
    return out


@lru_cache(maxsize=None)
def folder(fix: Path, name: str) -> Path:
    """A complete copy of fixture pipeline folder `name`, weights written as safetensors (fp16, as saved)."""
    from safetensors.numpy import save_file

    _TMP.mkdir(exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix=f"{name}_", dir=_TMP)) / name
    shutil.copytree(fix / name, out, ignore=shutil.ignore_patterns("keys.json", "buffers.npz"))
    for keys_file in sorted((fix / name).glob("*/keys.json")):
        sub = keys_file.parent
        keys = json.loads(keys_file.read_text())
        weights = {k: v.astype(np.float16) for k, v in _weights(sub, keys).items()}
        save_file(weights, str(out / sub.name / keys["file"]))
    return out


def cases(fix: Path) -> dict:
    return json.loads((fix / "cases.json").read_text())


def arrays(fix: Path, case: str) -> dict:
    with np.load(fix / f"{case}.npz") as f:
        return dict(f)


def components(fix: Path, name: str, dtype: str = "float32"):
    """msdiff.load_pipeline of fixture folder `name` (cached per dtype)."""
    return _components(fix, name, dtype)


@lru_cache(maxsize=None)
def _components(fix: Path, name: str, dtype: str):
    import msdiff
    return msdiff.load_pipeline(folder(fix, name), dtype=dtype, skip=("sd_unet",))


def run_case(fix: Path, case: str, mode: str, dtype: str = "float32", comps=None, inputs=None):
    """The recipe of recorded case `case` on its folder: frames [b, f, h, w, 3] (np) and diffusers' expected;
    `inputs` (an fp16_seeds seed's noise_<i>) replace the recorded draws."""
    import PIL.Image

    from msdiff import recipes
    meta, d = cases(fix)[case], arrays(fix, case)
    args = {k: v for k, v in meta["args"].items() if k != "output_type"}
    d.update(inputs or {})
    args.update(output_type="np", mode=mode, noise=[d[f"noise_{i}"] for i in range(meta["num_noise"])])
    if "image" in d:
        args["image"] = PIL.Image.fromarray(d["image"])
    if "video" in d:
        args["video"] = [PIL.Image.fromarray(f) for f in d["video"]]
    comps = components(fix, meta["folder"], dtype) if comps is None else comps
    return getattr(recipes, RECIPES[meta["pipeline_class"]])(comps, **args), d["expected"]


def rows(fix: Path) -> list:
    if not (fix / "cases.json").is_file():
        return []
    out = []
    for case, meta in sorted(cases(fix).items()):
        def run(mode, dtype, case=case):
            seeds = fp16_seeds(fix, case, dtype, lambda inputs: run_case(fix, case, mode, dtype, inputs=inputs)[0])
            if seeds is not None:
                return seeds
            got, ref = run_case(fix, case, mode, dtype)
            return [(got, ref, diffusers_fp16(fix, case, dtype))]

        out.append(Row(f"{meta['pipeline_class']} (tiny, {case})", "recipe", run))
    return out
