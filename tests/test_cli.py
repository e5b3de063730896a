"""`msdiff generate` over a fixture pipeline: PNG with metadata, progress bar, one-line errors."""
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from msdiff.cli import main

SD = Path(__file__).parent / "fixtures" / "pipelines" / "sd"


def _generate(tmp_path, *extra):
    out = tmp_path / "out.png"
    code = main(["generate", "--model", str(SD), "--prompt", "a photo of a cat", "--steps", "2",
                 "--size", "64x64", "--seed", "3", "--mode", "pynative", "--out", str(out), *extra])
    return code, out


def test_generate_writes_png_with_metadata_and_progress(tmp_path, capsys):
    code, out = _generate(tmp_path)
    assert code == 0
    img = PIL.Image.open(out)
    assert img.size == (64, 64)
    assert img.text["msdiff:prompt"] == "a photo of a cat"
    assert img.text["msdiff:seed"] == "3"
    assert img.text["msdiff:steps"] == "2"
    assert img.text["msdiff:sampler"] == "PNDMScheduler"
    assert img.text["msdiff:model"] == str(SD)
    err = capsys.readouterr().err
    # PNDM runs 3 net calls for 2 steps (as diffusers' bar, which counts its 3 timesteps): the bar ends at 3/3
    assert "3/3" in err and ("step/s" in err or "s/step" in err)


def test_same_seed_same_png(tmp_path):
    _, a = _generate(tmp_path / "a")
    _, b = _generate(tmp_path / "b")
    assert np.array_equal(np.asarray(PIL.Image.open(a)), np.asarray(PIL.Image.open(b)))


@pytest.mark.parametrize("args,message", [
    (["--model", "/nonexistent/model"], "/nonexistent/model"),
    (["--model", str(SD), "--size", "60x64"], "multiples of 8"),
    (["--model", str(SD), "--mask", str(SD / "model_index.json")], "--mask needs --image"),
    (["--model", str(SD), "--image", "missing.png", "--steps", "1"], "--image 'missing.png': no such file"),
])
def test_bad_input_is_one_line_error(tmp_path, capsys, args, message):
    code = main(["generate", "--prompt", "x", "--steps", "1", "--out", str(tmp_path / "o.png"), *args])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("msdiff generate: error:") and message in err[0]


def test_mask_of_wrong_size_is_one_line_error(tmp_path, capsys):
    image, mask = tmp_path / "i.png", tmp_path / "m.png"
    PIL.Image.new("RGB", (64, 64)).save(image)
    PIL.Image.new("L", (32, 32)).save(mask)
    inpaint = Path(__file__).parent / "fixtures" / "pipelines" / "sd_inpaint"
    code = main(["generate", "--model", str(inpaint), "--prompt", "x", "--steps", "4", "--image", str(image),
                 "--mask", str(mask), "--mode", "pynative", "--out", str(tmp_path / "o.png")])
    assert code == 2
    assert "mask" in capsys.readouterr().err.lower()


def test_train_writes_and_exports_a_checkpoint(tmp_path, monkeypatch):
    """`msdiff train` runs the training recipe for --steps and exports the diffusers pipeline folder (tiny net)."""
    from msdiff.recipes import digits
    calls = []
    monkeypatch.setattr(digits, "digits_16x16", lambda: (np.zeros((20, 1, 16, 16), np.float32),
                                                         np.arange(20) % 10))
    import msdiff.recipes.train as train
    real = train.train_unconditional

    def spy(*args, **kwargs):
        calls.append(kwargs["num_steps"])
        return real(*args, **{**kwargs, "unet_config": dict(kwargs["unet_config"], block_out_channels=(8, 8, 8),
                                                            attention_head_dim=8)})

    monkeypatch.setattr(train, "train_unconditional", spy)
    out, export = tmp_path / "run", tmp_path / "export"
    assert main(["train", "--out", str(out), "--steps", "2", "--export", str(export)]) == 0
    assert calls == [2]
    assert (export / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (export / "model_index.json").is_file()
