"""DiffEdit's inversion regularisation (invert with num_reg_steps > 0) against diffusers 0.35.2 (fixtures from
tools/fixtures/diffedit_reg.py on sd_more's tiny DiffEdit pipeline)."""
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

import msdiff
from msdiff.recipes import diffedit_reg as R
from msdiff.recipes.diffedit import invert
from msdiff.samplers import NoiseSource

FIX = Path(__file__).parent / "fixtures"
CASE = json.loads((FIX / "diffedit_reg" / "case.json").read_text())
DATA = dict(np.load(FIX / "diffedit_reg" / "invert.npz"))


@pytest.fixture(scope="module")
def pipe():
    return msdiff.load_pipeline(FIX / CASE["folder"], dtype="float32")


def _invert(pipe, **kw):
    args = dict(CASE["args"], image=PIL.Image.fromarray(DATA["image"]), noise=[DATA["noise_0"]])
    args.update(kw)
    return invert(pipe, **args).asnumpy()


def test_regularised_inversion_matches_diffusers(pipe):
    got = _invert(pipe, reg_shifts=DATA["shifts"])
    assert got.shape == DATA["expected"].shape
    assert np.abs(got - DATA["expected"]).max() <= 1e-4
    # the regularisation moves the latents far beyond the tolerance: the case exercises it
    plain = _invert(pipe, num_reg_steps=0)
    assert np.abs(plain - DATA["expected"]).max() > 1e-2


def test_drawn_shifts_follow_diffusers_bounds():
    src = NoiseSource(seed=3)
    shifts = R.draw_shifts(src, 3, 2, 5, 1, 4, 16)
    assert shifts.shape == (3, 2 * 5 * 4 * 2)
    highs = np.tile(R.shift_highs(1, 4, 16), 3 * 2 * 5).reshape(shifts.shape)
    assert (shifts >= 0).all() and (shifts < highs).all() and len(np.unique(shifts)) > 1
    assert np.array_equal(shifts, R.draw_shifts(NoiseSource(seed=3), 3, 2, 5, 1, 4, 16))
    assert R.pyramid_heights(16) == (16, 8) and R.pyramid_heights(8) == (8,)
    # the recorded draws have the same bounds (diffusers draws torch.randint(level height // 2))
    recorded = DATA["shifts"].reshape((3, -1))
    assert (recorded < np.tile(R.shift_highs(1, 4, 16), 2 * 5)).all()


def test_bad_arguments(pipe):
    with pytest.raises(ValueError, match="num_reg_steps must be a non-negative integer"):
        _invert(pipe, num_reg_steps=-1)
    with pytest.raises(ValueError, match="lambda_kl must be a finite number"):
        _invert(pipe, lambda_kl=float("nan"))
    with pytest.raises(ValueError, match="reg_shifts has 10 values, the regularisation draws 240"):
        _invert(pipe, reg_shifts=np.zeros(10, np.int64))


def test_cli_num_reg_steps(pipe, tmp_path):
    """`msdiff generate --num-reg-steps N` on a DiffEdit folder regularises the inversion: the PNG equals the three
    recipes called with num_reg_steps=N (shifts drawn from --seed)."""
    from msdiff.cli import main
    from msdiff.recipes.diffedit import diffedit, generate_mask

    photo, out = tmp_path / "photo.png", tmp_path / "out.png"
    PIL.Image.fromarray(DATA["image"]).save(photo)
    assert main(["generate", "--model", str(FIX / CASE["folder"]), "--prompt", "a dog", "--source-prompt", "a cat",
                 "--image", str(photo), "--strength", "0.5", "--num-reg-steps", "1", "--steps", "2", "--seed", "3",
                 "--mode", "pynative", "--out", str(out)]) == 0
    common = dict(num_inference_steps=2, seed=3, mode="pynative")
    mask = generate_mask(pipe, str(photo), "a dog", source_prompt="a cat", **common)
    inv = invert(pipe, "a cat", str(photo), inpaint_strength=0.5, num_reg_steps=1, **common)
    plain = invert(pipe, "a cat", str(photo), inpaint_strength=0.5, **common)
    assert np.abs(inv.asnumpy() - plain.asnumpy()).max() > 1e-3
    want = np.asarray(diffedit(pipe, "a dog", mask_image=mask, image_latents=inv, inpaint_strength=0.5, **common)[0])
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(out).convert("RGB")), want)
