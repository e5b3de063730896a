"""`msdiff generate` with careless or hostile input: the output path is checked before any work, invalid values are
refused naming the option and its range, every error is one line (the traceback only with --debug), an unknown
pipeline class is refused by name, and --from-png reruns a generation to the same pixels."""
import json
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from msdiff.cli import main

SD = Path(__file__).parent / "fixtures" / "pipelines" / "sd"
BASE = ["generate", "--model", str(SD), "--prompt", "a cat", "--steps", "1", "--size", "64x64", "--mode", "pynative"]


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("msdiff generate: error:"), err
    return err[0]


@pytest.mark.parametrize("out,message", [(".", "is a folder"), ("noext", "needs an image extension"),
                                         ("x.txt", "needs an image extension"), ("x.gif", "needs an image extension")])
def test_bad_out_is_refused_before_any_work(tmp_path, capsys, out, message):
    assert main(BASE + ["--out", str(tmp_path / out)]) == 2
    assert message in _error(capsys)


def test_unwritable_out_folder(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if shutil.os.access(locked, shutil.os.W_OK):  # root ignores the mode: a file in the way instead
        (tmp_path / "file").write_text("x")
        target, message = tmp_path / "file" / "o.png", "is not a folder"
    else:
        target, message = locked / "o.png", "is not writable"
    assert main(BASE + ["--out", str(target)]) == 2
    assert message in _error(capsys)


@pytest.mark.parametrize("args,message", [
    (["--steps", "0"], "--steps: expected a positive integer"), (["--steps", "-3"], "--steps: expected a positive"),
    (["--size", "0x0"], "--size must be positive"), (["--size", "64"], "--size must look like"),
    (["--guidance", "nan"], "--guidance: expected a finite number"),
    (["--guidance", "inf"], "--guidance: expected a finite number"),
    (["--strength", "1.5"], "--strength must be in (0, 1]"), (["--strength", "0"], "--strength must be in (0, 1]"),
    (["--seed", "-1"], "--seed must be a non-negative integer"), (["--per-class", "0"], "--per-class: expected"),
])
def test_invalid_values_name_the_option(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main(BASE + args + ["--out", str(tmp_path / "o.png")])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_unimplemented_pipeline_class_is_refused_by_name(tmp_path, capsys):
    """No fallback to a neighbouring recipe: a class msdiff does not implement names itself and the supported."""
    for name in ("StableDiffusionXLInstructPix2PixPipeline", "StableDiffusionDiffEditPipeline", "KandinskyPipeline"):
        folder = tmp_path / name
        shutil.copytree(SD, folder)
        index = json.loads((folder / "model_index.json").read_text())
        (folder / "model_index.json").write_text(json.dumps(dict(index, _class_name=name)))
        assert main(["generate", "--model", str(folder), "--out", str(tmp_path / "o.png")]) == 2
        err = _error(capsys)
        assert f"pipeline class {name!r} is not supported" in err and "StableDiffusionControlNetInpaintPipeline" in err
    assert not (tmp_path / "o.png").exists()


def test_unexpected_errors_are_one_line_and_debug_shows_them(tmp_path, capsys, monkeypatch):
    import msdiff.cli_pipelines as cp

    def boom(args):
        raise KeyError("some internal key")

    monkeypatch.setattr(cp, "generate", boom)
    assert main(BASE + ["--out", str(tmp_path / "o.png")]) == 2
    assert "KeyError: 'some internal key' (run with --debug" in _error(capsys)
    with pytest.raises(KeyError):
        main(BASE + ["--out", str(tmp_path / "o.png"), "--debug"])


def test_from_png_reproduces_the_pixels_and_metadata_is_complete(tmp_path, capsys):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main(BASE + ["--negative-prompt", "blurry", "--guidance", "5", "--seed", "7", "--out", str(a)]) == 0
    img = PIL.Image.open(a)
    params = img.text["parameters"]
    assert params.startswith("a cat\nNegative prompt: blurry\nSteps: 1, Sampler: PNDMScheduler, CFG scale: 5.0, "
                             "Seed: 7, Size: 64x64"), params
    for key in ("prompt", "negative_prompt", "guidance", "size", "seed", "steps", "mode", "dtype", "msdiff_version"):
        assert f"msdiff:{key}" in img.text, key
    assert main(["generate", "--from-png", str(a), "--out", str(b)]) == 0
    assert np.array_equal(np.asarray(PIL.Image.open(a)), np.asarray(PIL.Image.open(b)))
    assert PIL.Image.open(b).text["msdiff:seed"] == "7"
    capsys.readouterr()
    assert main(["generate", "--from-png", str(tmp_path / "missing.png"), "--out", str(b)]) == 2
    assert "--from-png" in _error(capsys)
