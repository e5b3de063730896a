"""`msdiff generate` on DDPM / DDIM / consistency / LDM / InstructPix2Pix / SD inpainting / ControlNet /
T2I-Adapter / DiT / PixArt pipeline folders: the recipe receives the expected arguments, the PNG (size, metadata)
equals the recipe called directly with them, and options a pipeline does not take are one-line errors. (The argument
check matters for LDM text-to-image: the fixture's VQ decoder snaps latents to 8 codes, so its pixels do not change
with the prompt or guidance scale.)

The DDPM folder is tests/fixtures/loader/ddpm; the DDIM, class-conditional DDPM and consistency folders are assembled
in a temporary folder from committed fixture files (unet_2d/class_cond, consistency.json's scheduler); the LDM
folders are tests/fixtures/ldm/ldm_text2im and ldm_super_resolution.
"""
import importlib
import inspect
import json
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

import msdiff
from msdiff.cli import main
import importlib

consistency, ldm, unconditional = (importlib.import_module(f"msdiff.recipes.{m}") for m in ("consistency", "ldm", "unconditional"))

PIX2PIX_MODULE = importlib.import_module("msdiff.recipes.instruct_pix2pix")  # the package exports the function
DIT_MODULE = importlib.import_module("msdiff.recipes.dit")
CONTROLNET_MODULE = importlib.import_module("msdiff.recipes.controlnet")
PIXART_MODULE = importlib.import_module("msdiff.recipes.pixart")
ADAPTER_MODULE = importlib.import_module("msdiff.recipes.t2i_adapter")

FIX = Path(__file__).parent / "fixtures"
DDPM = FIX / "loader" / "ddpm"
LDM_T2I = FIX / "ldm" / "ldm_text2im"
LDM_SR = FIX / "ldm" / "ldm_super_resolution"
PIX2PIX = FIX / "pipelines" / "sd_pix2pix"
DIT = FIX / "dit" / "pipeline"
CONTROLNET = FIX / "controlnet" / "sd"
PIXART = FIX / "pixart" / "pipeline"
ADAPTER = FIX / "t2i_adapter" / "sd"
SD_INPAINT = FIX / "pipelines" / "sd_inpaint"


def _pipeline(folder: Path, class_name: str, unet: Path, scheduler: dict) -> Path:
    """A diffusers pipeline folder (model_index.json, unet/, scheduler/) from a committed UNet2DModel folder."""
    (folder / "unet").mkdir(parents=True)
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        shutil.copy(unet / name, folder / "unet" / name)
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler))
    index = {"_class_name": class_name, "_diffusers_version": "0.35.2",
             "scheduler": ["diffusers", scheduler["_class_name"]],
             "unet": ["diffusers", "UNet2DModel"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    ddpm_scheduler = json.loads((DDPM / "scheduler" / "scheduler_config.json").read_text())
    cm_scheduler = dict(json.loads((FIX / "unet_2d" / "consistency.json").read_text())["scheduler"],
                        _class_name="CMStochasticIterativeScheduler")
    class_cond = FIX / "unet_2d" / "class_cond"
    low = root / "low.png"
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(low)
    return {"ddpm": DDPM, "ddim": _pipeline(root / "ddim", "DDIMPipeline", DDPM / "unet", ddpm_scheduler),
            "ddpm_class": _pipeline(root / "ddpm_class", "DDPMPipeline", class_cond, ddpm_scheduler),
            "cm": _pipeline(root / "cm", "ConsistencyModelPipeline", class_cond, cm_scheduler),
            "unknown": _pipeline(root / "unknown", "KarrasVePipeline", DDPM / "unet", ddpm_scheduler),
            "low": low}


def _run(monkeypatch, tmp_path, module, recipe: str, model, *extra) -> PIL.Image.Image:
    """`msdiff generate --model model --seed 3 --mode pynative *extra`; the PNG, which must equal module.recipe called
    directly with the arguments the command passed it, and those arguments (without components and callback)."""
    real, calls = getattr(module, recipe), []

    def spy(*args, **kwargs):
        calls.append(inspect.signature(real).bind(*args, **kwargs).arguments)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, recipe, spy)
    out = tmp_path / "out.png"
    assert main(["generate", "--model", str(model), "--seed", "3", "--mode", "pynative", "--out", str(out),
                 *extra]) == 0
    assert len(calls) == 1
    passed = {k: v for k, v in calls[0].items() if k not in ("components_or_unet", "components", "callback")}
    png = PIL.Image.open(out)
    direct = real(msdiff.load_pipeline(model), **passed)[0]
    assert png.size == direct.size and png.mode == direct.mode
    np.testing.assert_array_equal(np.asarray(png), np.asarray(direct))
    return png, passed


def _assert_meta(png, **expected):
    """The PNG's msdiff:* keys hold at least these values (every generation parameter is stored)."""
    got = {k.split(":", 1)[1]: v for k, v in png.text.items() if k.startswith("msdiff:")}
    assert {k: got.get(k) for k in expected} == {k: str(v) for k, v in expected.items()}
    assert "parameters" in png.text


@pytest.mark.parametrize("name,sampler,scheduler", [("ddpm", None, "DDPMScheduler"), ("ddim", "ddim", "DDIMScheduler")])
def test_unconditional_pipelines(monkeypatch, tmp_path, folders, name, sampler, scheduler):
    png, passed = _run(monkeypatch, tmp_path, unconditional, "unconditional", folders[name], "--steps", "2")
    assert passed == dict(num_inference_steps=2, seed=3, mode="pynative", **({"sampler": sampler} if sampler else {}))
    assert png.size == (8, 8)
    _assert_meta(png, seed=3, steps=2, sampler=scheduler, model=folders[name], mode="pynative", dtype="fp32")


def test_class_conditional_ddpm_with_sampler(monkeypatch, tmp_path, folders):
    png, passed = _run(monkeypatch, tmp_path, unconditional, "unconditional", folders["ddpm_class"], "--steps", "2",
                       "--class-label", "4", "--sampler", "ddim")
    assert passed == dict(num_inference_steps=2, class_labels=[4], seed=3, sampler="ddim", mode="pynative")
    _assert_meta(png, seed=3, steps=2, sampler="DDIMScheduler", model=folders["ddpm_class"], mode="pynative",
                 dtype="fp32", class_label=4)


def test_consistency_pipeline(monkeypatch, tmp_path, folders):
    png, passed = _run(monkeypatch, tmp_path, consistency, "consistency", folders["cm"], "--steps", "2",
                       "--class-label", "1")
    assert passed == dict(num_inference_steps=2, class_labels=[1], seed=3, mode="pynative")
    assert png.size == (8, 8)
    _assert_meta(png, seed=3, steps=2, sampler="CMStochasticIterativeScheduler", model=folders["cm"],
                 mode="pynative", dtype="fp32", class_label=1)


def test_consistency_default_is_one_step(monkeypatch, tmp_path, folders):
    png, passed = _run(monkeypatch, tmp_path, consistency, "consistency", folders["cm"])
    assert passed == dict(num_inference_steps=1, seed=3, mode="pynative")
    assert png.text["msdiff:steps"] == "1"


def test_ldm_text_to_image_pipeline(monkeypatch, tmp_path):
    png, passed = _run(monkeypatch, tmp_path, ldm, "ldm_text_to_image", LDM_T2I, "--prompt", "a red cat",
                       "--guidance", "3", "--steps", "2", "--size", "16x16")
    assert passed == dict(prompt="a red cat", num_inference_steps=2, guidance_scale=3.0, height=16, width=16, seed=3,
                          mode="pynative")
    assert png.size == (4, 4)  # latents are height / 8 (as diffusers); the tiny VQ-VAE upsamples only 2x
    _assert_meta(png, prompt="a red cat", seed=3, steps=2, sampler="DDIMScheduler", model=LDM_T2I, mode="pynative",
                 dtype="fp32")


def test_ldm_super_resolution_pipeline(monkeypatch, tmp_path, folders):
    png, passed = _run(monkeypatch, tmp_path, ldm, "ldm_super_resolution", LDM_SR, "--image", str(folders["low"]),
                       "--steps", "2")
    assert passed == dict(image=str(folders["low"]), num_inference_steps=2, seed=3, mode="pynative")
    assert png.size == (64, 64)
    _assert_meta(png, seed=3, steps=2, sampler="DDIMScheduler", model=LDM_SR, mode="pynative", dtype="fp32")


def test_instruct_pix2pix_pipeline(monkeypatch, tmp_path, folders):
    png, passed = _run(monkeypatch, tmp_path, PIX2PIX_MODULE, "instruct_pix2pix", PIX2PIX, "--image",
                       str(folders["low"]), "--prompt", "make it blue", "--steps", "2", "--image-guidance", "2")
    assert passed == dict(prompt="make it blue", image=str(folders["low"]), num_inference_steps=2,
                          image_guidance_scale=2.0, seed=3, mode="pynative")
    assert png.size == (32, 32)


def test_controlnet_pipeline(monkeypatch, tmp_path, folders):
    png, passed = _run(monkeypatch, tmp_path, CONTROLNET_MODULE, "controlnet", CONTROLNET, "--image",
                       str(folders["low"]), "--prompt", "a cat", "--steps", "2", "--size", "32x32",
                       "--controlnet-scale", "0.6", "--guidance", "5")
    assert passed == dict(prompt="a cat", image=str(folders["low"]), num_inference_steps=2, guidance_scale=5.0,
                          height=32, width=32, controlnet_conditioning_scale=0.6, seed=3, mode="pynative")
    assert png.size == (32, 32)


def test_t2i_adapter_pipeline(monkeypatch, tmp_path, folders):
    png, passed = _run(monkeypatch, tmp_path, ADAPTER_MODULE, "t2i_adapter", ADAPTER, "--image", str(folders["low"]),
                       "--prompt", "a cat", "--steps", "2", "--size", "32x32", "--adapter-scale", "0.7")
    assert passed == dict(prompt="a cat", image=str(folders["low"]), num_inference_steps=2, height=32, width=32,
                          adapter_conditioning_scale=0.7, seed=3, mode="pynative")
    assert png.size == (32, 32)


def test_pixart_pipeline(monkeypatch, tmp_path):
    png, passed = _run(monkeypatch, tmp_path, PIXART_MODULE, "pixart", PIXART, "--prompt", "a red cube", "--steps", "2",
                       "--size", "24x16", "--guidance", "3")
    assert passed == dict(prompt="a red cube", num_inference_steps=2, guidance_scale=3.0, seed=3, mode="pynative",
                          width=24, height=16, use_resolution_binning=False)
    assert png.size == (24, 16)


def test_dit_pipeline(monkeypatch, tmp_path):
    png, passed = _run(monkeypatch, tmp_path, DIT_MODULE, "dit", DIT, "--class-label", "7", "--steps", "2",
                       "--guidance", "2.5", "--sampler", "ddim")
    assert passed == dict(class_labels=[7], guidance_scale=2.5, num_inference_steps=2, seed=3, sampler="ddim",
                          mode="pynative")
    _assert_meta(png, seed=3, steps=2, sampler="DDIMScheduler", model=DIT, mode="pynative", dtype="fp32", class_label=7)


@pytest.mark.parametrize("model,args,message", [
    ("dit", [], "DiTPipeline needs --class-label"),
    ("pixart", ["--image", "i.png"], "--image does not apply to PixArtAlphaPipeline"),
    ("adapter", ["--prompt", "x"], "StableDiffusionAdapterPipeline needs --image"),
    ("controlnet", ["--prompt", "x"], "StableDiffusionControlNetPipeline needs --image"),
    ("sd", ["--controlnet-scale", "0.5"], "--controlnet-scale does not apply to StableDiffusionPipeline"),
    ("dit", ["--prompt", "a cat", "--class-label", "1"], "--prompt does not apply to DiTPipeline"),
    ("pix2pix", [], "StableDiffusionInstructPix2PixPipeline needs --image"),
    ("pix2pix", ["--image", "i.png", "--size", "64x64"], "--size does not apply to StableDiffusionInstructPix2Pix"),
    ("sd_inpaint", ["--image", "i.png"], "StableDiffusionInpaintPipeline needs --mask"),
    ("sdxl_refiner", [], "StableDiffusionXLImg2ImgPipeline needs --image"),
    ("ddpm", ["--prompt", "a cat"], "--prompt does not apply to DDPMPipeline"),
    ("ddim", ["--guidance", "2"], "--guidance does not apply to DDIMPipeline"),
    ("cm", ["--sampler", "ddim"], "--sampler does not apply to ConsistencyModelPipeline"),
    ("ldm_t2i", ["--mask", "m.png"], "--mask does not apply to LDMTextToImagePipeline"),
    ("ldm_t2i", [], "the default size (the UNet's sample_size 2 x the VQ-VAE's factor 2) gives 4x4: pass --size WxH"),
    ("ldm_t2i", ["--size", "12x12"], "multiples of 8; --size gives 12x12"),
    ("ldm_sr", ["--image", "i.png", "--prompt", "x"], "--prompt does not apply to LDMSuperResolutionPipeline"),
    ("ldm_sr", [], "LDMSuperResolutionPipeline needs --image"),
    ("unknown", [], "'KarrasVePipeline' is not supported"),
    ("ddpm_class", [], "class-conditional: pass --class-label in [0, 5)"),
    ("ddpm_class", ["--class-label", "5"], "--class-label must lie in [0, 5)"),
    ("ddpm", ["--class-label", "0"], "not class-conditional"),
    (None, ["--prompt", "x"], "--prompt does not apply to the bundled digit model"),
])
def test_wrong_option_is_one_line_error(tmp_path, capsys, folders, model, args, message):
    paths = dict(folders, ldm_t2i=LDM_T2I, ldm_sr=LDM_SR, pix2pix=PIX2PIX, sd_inpaint=SD_INPAINT, dit=DIT,
                 controlnet=CONTROLNET, pixart=PIXART, adapter=ADAPTER,
                 sd=FIX / "pipelines" / "sd",
                 sdxl_refiner=FIX / "pipelines" / "sdxl_refiner")
    model_args = [] if model is None else ["--model", str(paths[model])]
    code = main(["generate", *model_args, "--steps", "1", "--mode", "pynative", "--out", str(tmp_path / "o.png"),
                 *args])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("msdiff generate: error:") and message in err[0], err
    assert not (tmp_path / "o.png").exists()


def test_unknown_class_names_the_supported_ones(tmp_path, capsys, folders):
    assert main(["generate", "--model", str(folders["unknown"]), "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    for name in ("StableDiffusionPipeline", "DDPMPipeline", "DDIMPipeline", "ConsistencyModelPipeline",
                 "LDMTextToImagePipeline", "LDMSuperResolutionPipeline"):
        assert name in err
