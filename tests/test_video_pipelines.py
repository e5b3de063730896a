"""The four video pipelines as recipes (AnimateDiff text-to-video and video-to-video, Stable Video Diffusion,
I2VGen-XL) against diffusers 0.35.2 on the tiny folders of tools/fixtures/video_pipelines.py: frames max abs <= 1e-4
in PyNative fp32, one case in graph mode (graph and fp16 of every case: the support rows,
tools/support/video_pipelines.py); the AnimateDiff assembly from an SD folder and a motion adapter, SVD's resize,
bad input, and `msdiff generate` writing an animated GIF."""
import json
import shutil
import sys
from pathlib import Path

import mindspore as ms
import numpy as np
import PIL.Image
import pytest

from msdiff import recipes
from msdiff.recipes.animatediff import animatediff_components
from msdiff.recipes.frames import postprocess_video, read_video

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "video_pipelines"
sys.path.insert(0, str(ROOT / "tools"))
from fixtures.video_pipelines import RESIZE, resize_input  # noqa: E402
from support import video_pipelines as vp  # noqa: E402

CASES = sorted(vp.cases(FIX))


def _max_abs(got, ref) -> float:
    got = np.asarray(got, np.float64)
    assert got.shape == ref.shape, f"shape {got.shape} vs diffusers {ref.shape}"
    return float(np.abs(got - ref).max())


@pytest.mark.parametrize("case", CASES)
def test_video_pipeline_parity(case):
    err = _max_abs(*vp.run_case(FIX, case, "pynative"))
    assert err <= 1e-4, f"{case}: frames max abs {err:.3g} vs diffusers"


def test_video_pipeline_graph():
    """The one graph-mode case of the video pipelines (SVD: the per-frame guidance Tensor and the frame channels
    inside the compiled step)."""
    err = _max_abs(*vp.run_case(FIX, "svd", "graph"))
    assert err <= 1e-4, f"svd graph: frames max abs {err:.3g} vs diffusers"


def _sd_folder(tmp_path: Path) -> Path:
    """The AnimateDiff fixture as an SD pipeline folder (its sd_unet as unet/, no motion adapter)."""
    src = vp.folder(FIX, "animatediff")
    sd = tmp_path / "sd"
    shutil.copytree(src, sd, ignore=shutil.ignore_patterns("unet", "motion_adapter"))
    shutil.move(str(sd / "sd_unet"), str(sd / "unet"))
    index = json.loads((sd / "model_index.json").read_text())
    index.update(_class_name="StableDiffusionPipeline", unet=["diffusers", "UNet2DConditionModel"])
    index.pop("motion_adapter")
    (sd / "model_index.json").write_text(json.dumps(index))
    return sd


def test_animatediff_assembly_equals_saved_motion_unet(tmp_path):
    """animatediff_components(SD folder, motion adapter) holds exactly the UNetMotionModel diffusers saved
    (UNetMotionModel.from_unet2d), parameter by parameter."""
    assembled = animatediff_components(_sd_folder(tmp_path), vp.folder(FIX, "animatediff") / "motion_adapter")
    saved = dict(vp.components(FIX, "animatediff").unet.parameters_and_names())
    ours = dict(assembled.unet.parameters_and_names())
    assert assembled.pipeline_class == "AnimateDiffPipeline"
    assert set(ours) == set(saved)
    different = [k for k in ours if not np.array_equal(ours[k].asnumpy(), saved[k].asnumpy())]
    assert not different, f"assembled parameters differ from the saved UNetMotionModel: {different[:5]}"


@pytest.mark.parametrize("name", sorted(RESIZE))
def test_svd_resize_with_antialiasing(name):
    from msdiff.recipes.svd import resize_with_antialiasing
    (h, w), size = RESIZE[name]
    ref = np.load(FIX / "resize.npz")[name]
    assert np.abs(resize_with_antialiasing(resize_input(h, w), *size) - ref).max() <= 1e-5


def test_postprocess_video_outputs():
    x = ms.Tensor(np.linspace(-1.2, 1.2, 2 * 3 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 3, 4, 5))
    frames = postprocess_video(x, "np")
    assert frames.shape == (2, 3, 4, 5, 3) and frames.min() == 0.0 and frames.max() == 1.0
    np.testing.assert_allclose(frames[1, 2, :, :, 0], np.clip(x.asnumpy()[1, 0, 2] / 2 + 0.5, 0, 1), atol=1e-7)
    pil = postprocess_video(x, "pil")
    assert len(pil) == 2 and all(len(v) == 3 and v[0].size == (5, 4) for v in pil)


def test_video_recipe_errors():
    comps = vp.components(FIX, "animatediff")
    with pytest.raises(ValueError, match="decode_chunk_size must be a positive integer"):
        recipes.animatediff(comps, "a cat", num_frames=2, decode_chunk_size=0)
    with pytest.raises(ValueError, match="num_frames must be a positive integer"):
        recipes.animatediff(comps, "a cat", num_frames=0)
    with pytest.raises(ValueError, match="video is required"):
        recipes.animatediff_video_to_video(comps, prompt="a cat")
    svd = vp.components(FIX, "svd")
    with pytest.raises(ValueError, match="not a UNetMotionModel"):
        recipes.animatediff(svd, "a cat")
    with pytest.raises(ValueError, match="image is required"):
        recipes.stable_video_diffusion(svd)
    with pytest.raises(ValueError, match="max_guidance_scale must be a finite number"):
        recipes.stable_video_diffusion(svd, np.zeros((32, 32, 3), np.uint8), height=32, width=32,
                                       max_guidance_scale=float("nan"))
    with pytest.raises(ValueError, match="no such file"):
        recipes.i2vgen_xl(vp.components(FIX, "i2vgen_xl"), "a cat", "/nonexistent.png")


def test_cli_writes_an_animated_gif(tmp_path, capsys):
    """msdiff generate on the AnimateDiff folder: the frames the recipe returns, as an animated GIF (the name's
    suffix becomes .gif), prompt / seed / steps / model in its comment; read back with Pillow."""
    from msdiff import cli
    model = vp.folder(FIX, "animatediff")
    out = tmp_path / "cat.png"
    assert cli.main(["generate", "--model", str(model), "--prompt", "a cat", "--frames", "2", "--size", "32x32",
                     "--steps", "2", "--seed", "3", "--mode", "pynative", "--out", str(out)]) == 0
    gif = out.with_suffix(".gif")
    assert f"wrote {gif}" in capsys.readouterr().out and not out.exists()
    with PIL.Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 2 and im.size == (32, 32)
        meta = json.loads(im.info["comment"])
    assert (meta["prompt"], meta["seed"], meta["steps"], meta["model"]) == ("a cat", 3, 2, str(model))
    frames = read_video(gif)
    expected = recipes.animatediff(vp.components(FIX, "animatediff"), "a cat", num_frames=2, height=32, width=32,
                                   num_inference_steps=2, seed=3, mode="pynative")[0]
    assert len(frames) == 2
    for got, ref in zip(frames, expected):  # GIF holds a 256-colour palette: close, not equal
        assert np.abs(np.asarray(got, np.int16) - np.asarray(ref, np.int16)).mean() < 8
