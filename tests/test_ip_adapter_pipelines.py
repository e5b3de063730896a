"""IP-Adapter (base and plus, SD and SD-XL) in the recipes against diffusers 0.35.2's pipelines with load_ip_adapter:
alone, with img2img and with a ControlNet (tests/fixtures/ip_adapter, tools/fixtures/ip_adapter.py). Images fp32
max abs <= 1e-4 in PyNative (graph mode and fp16 of every case: the support rows, tools/support/lora.py). Also
the CLI's --ip-adapter / --ip-image / --ip-adapter-scale, and the errors for an adapter without image or the reverse.
"""
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

import msdiff
from msdiff import recipes
from msdiff.cli import main
from msdiff.io import LoadError
from msdiff.io.ip_adapter import load_ip_adapter
from tools.support.lora import ip_case_call

FIX = Path(__file__).parent / "fixtures" / "ip_adapter"
SD = Path(__file__).parent / "fixtures" / "pipelines" / "sd"


@pytest.mark.parametrize("name", ["sd_plus_text_to_image", "sdxl_plus_text_to_image", "sd_ip_image_to_image",
                                  "sd_ip_controlnet"])
def test_ip_adapter_pipelines_match_diffusers(name):
    recipe, components, kwargs, expected = ip_case_call(FIX, name)
    got = np.asarray(recipe(components, mode="pynative", **kwargs))
    err = float(np.abs(got - expected).max())
    assert err <= 1e-4, f"{name}: max abs {err:.2e}"


def test_adapter_and_image_go_together():
    c = msdiff.load_pipeline(SD)
    with pytest.raises(ValueError, match="needs an IP-Adapter"):
        recipes.text_to_image(c, "a cat", ip_adapter_image=np.zeros((32, 32, 3), np.uint8), num_inference_steps=1,
                              mode="pynative")
    load_ip_adapter(c, FIX / "sd_plus.safetensors")
    with pytest.raises(ValueError, match="pass ip_adapter_image="):
        recipes.text_to_image(c, "a cat", num_inference_steps=1, mode="pynative")
    with pytest.raises(LoadError, match="exactly one .safetensors"):
        load_ip_adapter(msdiff.load_pipeline(SD), FIX)


def test_ip_adapter_from_the_cli(tmp_path, capsys):
    """--ip-adapter FILE --ip-image IMG --ip-adapter-scale S: the PNG equals the recipe called directly, and the
    three options are in the PNG metadata."""
    image = tmp_path / "ip.png"
    PIL.Image.fromarray(np.random.default_rng(5).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(image)
    out, adapter = tmp_path / "o.png", FIX / "sd_plus.safetensors"
    assert main(["generate", "--model", str(SD), "--prompt", "a cat", "--steps", "2", "--size", "64x64", "--mode",
                 "pynative", "--seed", "3", "--ip-adapter", str(adapter), "--ip-image", str(image),
                 "--ip-adapter-scale", "0.7", "--out", str(out)]) == 0
    c = msdiff.load_pipeline(SD)
    load_ip_adapter(c, adapter, scale=0.7)
    direct = recipes.text_to_image(c, "a cat", num_inference_steps=2, height=64, width=64, seed=3, mode="pynative",
                                   ip_adapter_image=PIL.Image.open(image).convert("RGB"))[0]
    png = PIL.Image.open(out)
    np.testing.assert_array_equal(np.asarray(png), np.asarray(direct))
    assert (png.text["msdiff:ip_adapter"], png.text["msdiff:ip_image"], png.text["msdiff:ip_adapter_scale"]) == \
        (str(adapter), str(image), "0.7")
    capsys.readouterr()
    assert main(["generate", "--model", str(SD), "--prompt", "a cat", "--ip-adapter", str(adapter),
                 "--out", str(out)]) == 2
    assert "--ip-adapter and --ip-image go together" in capsys.readouterr().err
