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
                                         ("x.txt", "needs an image extension"), ("x.bmp", "needs an image extension")])
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
    for name in ("BlipDiffusionPipeline", "ShapEPipeline", "StableCascadeDecoderPipeline"):
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


@pytest.mark.parametrize("args,message", [  # msdiff.budget's decode check, before any step
    (["--size", "100000x100000"], "MemoryBudgetError: decoding latents (1, 4, 12500, 12500)"),
    (["--size", "65536x65536"], "MemoryBudgetError: decoding latents (1, 4, 8192, 8192)")])
def test_oversized_requests_are_refused_up_front(tmp_path, capsys, args, message):
    assert main(BASE[:-4] + ["--mode", "pynative"] + args + ["--out", str(tmp_path / "o.png")]) == 2
    err = _error(capsys)
    assert message in err and "GiB" in err and "smaller size" in err


def test_huge_digit_batch_is_refused_up_front(tmp_path, capsys):
    assert main(["generate", "--per-class", "100000000", "--steps", "1", "--out", str(tmp_path / "o.png")]) == 2
    assert "need at least" in _error(capsys)


def test_sixteen_bit_gray_images_are_scaled_not_saturated(tmp_path):
    """A 16-bit grayscale PNG at mid-gray comes out mid-gray (a plain Pillow convert would make it white)."""
    from msdiff.recipes.images import preprocess_image
    path = tmp_path / "g16.png"
    PIL.Image.fromarray(np.full((16, 16), 32768, np.uint16)).save(path)
    x = preprocess_image(str(path), 16, 16).asnumpy()
    np.testing.assert_allclose(x, 2 * 127 / 255 - 1, atol=1e-6)
    PIL.Image.fromarray(np.full((16, 16), 65535, np.uint16)).save(path)
    np.testing.assert_allclose(preprocess_image(str(path), 16, 16).asnumpy(), 1.0, atol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    (dict(prompt=[]), "prompt is an empty list"), (dict(prompt=["a", 3]), "non-empty list of strings"), (dict(prompt=b"\xff\xfe"), "got bytes"),
    (dict(prompt="x", num_images_per_prompt=0), "num_images_per_prompt must be a positive integer"),
    (dict(prompt="x", height="64", width=64), "height must be an integer"),
    (dict(prompt="x", clip_skip=40), "clip_skip must be an integer in"),
    (dict(prompt="x", guidance_rescale=float("nan")), "guidance_rescale must be in"),
])
def test_recipe_arguments_are_checked_and_named(kwargs, message):
    import msdiff
    from msdiff import recipes
    c = msdiff.load_pipeline(SD)
    with pytest.raises(ValueError, match=message):
        recipes.text_to_image(c, num_inference_steps=1, **dict(dict(height=64, width=64), **kwargs))


def test_fp16_precision_plan_from_the_cli(tmp_path, capsys):
    """--fp32-blocks reaches the loader (the named VAE block computes in fp32) and --verbose prints the plan."""
    out = tmp_path / "o.png"
    assert main(BASE + ["--dtype", "fp16", "--fp32-blocks", "vae:decoder.up_blocks.0", "--verbose",
                        "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "vae:" in err and "decoder.up_blocks.0" in err and out.is_file()
    assert main(BASE + ["--dtype", "fp16", "--fp32-blocks", "nonet:x", "--out", str(out)]) == 2
    assert "not nets of this pipeline" in _error(capsys)
    assert main(BASE + ["--dtype", "fp16", "--fp32-blocks", "unet", "--out", str(out)]) == 2
    assert "--fp32-blocks must look like" in _error(capsys)


def test_lora_and_embedding_from_the_cli(tmp_path, capsys):
    """--lora FILE:SCALE changes the image and is stored in the metadata; a missing file is a one-line error."""
    lora = Path(__file__).parent / "fixtures" / "lora" / "sd_peft.safetensors"
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main(BASE + ["--seed", "1", "--out", str(a)]) == 0
    assert main(BASE + ["--seed", "1", "--lora", f"{lora}:0.7", "--out", str(b)]) == 0
    assert not np.array_equal(np.asarray(PIL.Image.open(a)), np.asarray(PIL.Image.open(b)))
    assert PIL.Image.open(b).text["msdiff:lora"] == str([f"{lora}:0.7"])
    capsys.readouterr()
    assert main(BASE + ["--lora", str(tmp_path / "none.safetensors"), "--out", str(b)]) == 2
    assert "none.safetensors" in _error(capsys)


def test_multi_controlnet_folder_from_the_cli(tmp_path, capsys):
    """A pipeline folder saved with a MultiControlNetModel (controlnet/, controlnet_1/) loads as a list of
    ControlNets; --image once per ControlNet runs them together, and the PNG equals the recipe called directly."""
    import msdiff
    from msdiff import recipes
    folder = tmp_path / "multi"
    shutil.copytree(Path(__file__).parent / "fixtures" / "controlnet" / "sd", folder)
    shutil.copytree(folder / "controlnet", folder / "controlnet_1")
    index = json.loads((folder / "model_index.json").read_text())
    index["controlnet"] = ["diffusers", "MultiControlNetModel"]
    (folder / "model_index.json").write_text(json.dumps(index))
    images = []
    for i in range(2):
        images.append(tmp_path / f"c{i}.png")
        PIL.Image.fromarray(np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images[-1])
    out = tmp_path / "o.png"
    args = ["generate", "--model", str(folder), "--prompt", "a cat", "--steps", "1", "--mode", "pynative",
            "--seed", "2", "--controlnet-scale", "0.5"]
    assert main(args + ["--image", str(images[0]), "--image", str(images[1]), "--out", str(out)]) == 0
    components = msdiff.load_pipeline(folder)
    assert len(components.extra["controlnet"]) == 2
    direct = recipes.controlnet(components, "a cat", [str(p) for p in images], num_inference_steps=1, seed=2,
                                controlnet_conditioning_scale=0.5)[0]
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(out)), np.asarray(direct))
    capsys.readouterr()
    assert main(args + ["--image", str(images[0]), "--out", str(out)]) == 2
    assert "2 ControlNets need a list of 2 control images" in _error(capsys)
    sd = Path(__file__).parent / "fixtures" / "pipelines" / "sd"
    assert main(["generate", "--model", str(sd), "--image", str(images[0]), "--image", str(images[1]),
                 "--out", str(out)]) == 2
    assert "--image given 2 times" in _error(capsys)


def test_prompts_file_loads_the_model_once(tmp_path, capsys, monkeypatch):
    import msdiff
    loads, real = [], msdiff.load_pipeline

    def counting(*args, **kwargs):
        loads.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(msdiff, "load_pipeline", counting)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\na dog\n")
    argv = ["generate", "--model", str(SD), "--prompts", str(prompts), "--out-dir", str(tmp_path / "out"),
            "--steps", "1", "--size", "64x64", "--mode", "pynative"]
    assert main(argv) == 0
    assert "wrote 2 images" in capsys.readouterr().out
    assert loads == [str(SD)]
