"""GLIGEN with reference images against diffusers 0.35.2 (tools/fixtures/gligen_text_image.py).

PyNative fp32 images within 1e-4 of diffusers' StableDiffusionGLIGENTextImagePipeline (phrases and images, input
masks without guidance, phrases only), one graph case; the text-image UNet, CLIPImageProjection and the reference
image feature within rel L2 1e-5; anhnct/Gligen_Text_Image's UNet and image_project (configs written from public
knowledge, built by diffusers on the meta device) map one to one; bad input is a one-line ValueError; `msdiff
generate` dispatches. Graph mode and fp16 of every case are measured by tools/support/gligen_text_image.py.
"""
import dataclasses
import gzip
import json
from pathlib import Path

import mindspore as ms
import numpy as np
import PIL.Image
import pytest
from mindspore import Tensor
from mindspore.nn.utils import no_init_parameters

import msdiff
from msdiff.io.registry import net_entry
from msdiff.recipes import family_of
from msdiff.recipes.gligen import gligen
from msdiff.recipes.gligen_text_image import gligen_text_image, image_feature
from tools.support._packed import pipeline_folder as packed_folder
from tools.support.gligen_text_image import case_kwargs, inpaint_case, inpaint_folder, pipeline_folder

FIXTURES = Path(__file__).parent / "fixtures" / "gligen_text_image"
CASES = json.loads((FIXTURES / "cases.json").read_text())
INPAINT = json.loads((FIXTURES / "inpaint.json").read_text())
NETS = dict(np.load(FIXTURES / "nets.npz"))


@pytest.fixture(scope="module")
def pipe():
    return msdiff.load_pipeline(pipeline_folder(FIXTURES))


def _rel(got, want) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


@pytest.mark.parametrize("case,mode", [("text_image", "pynative"), ("masks_no_cfg", "pynative"),
                                       ("phrases_only", "pynative"), ("phrases_only", "graph")])
def test_gligen_text_image(pipe, case, mode):
    kwargs, want = case_kwargs(FIXTURES, case, CASES[case])
    got = np.asarray(gligen_text_image(pipe, output_type="np", mode=mode, **kwargs))
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4, np.abs(got - want).max()


@pytest.mark.parametrize("case", sorted(INPAINT))
def test_gligen_inpaint_image(case):
    """gligen_inpaint_image of both GLIGEN pipelines (inpainting UNets of 9 input channels) equals diffusers'."""
    meta = INPAINT[case]
    recipe, kwargs, want, _ = inpaint_case(FIXTURES, case, meta)
    c = msdiff.load_pipeline(inpaint_folder(FIXTURES, meta["pipeline"]))
    got = np.asarray(recipe(c, output_type="np", mode="pynative", **kwargs))
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4, np.abs(got - want).max()
    with pytest.raises(ValueError, match="height and width must be the VAE's sample_size 64"):
        recipe(c, **dict(kwargs, height=32))
    with pytest.raises(ValueError, match="takes 9 input channels .*: pass gligen_inpaint_image"):
        recipe(c, **dict(kwargs, gligen_inpaint_image=None))


def test_inpaint_needs_inpainting_unet(pipe):
    kwargs, _ = case_kwargs(FIXTURES, "text_image", CASES["text_image"])
    with pytest.raises(ValueError, match=r"gligen_inpaint_image needs an inpainting GLIGEN UNet \(9 input channels\)"):
        gligen_text_image(pipe, **dict(kwargs, gligen_inpaint_image=PIL.Image.new("RGB", (64, 64))))


def test_nets_parity(pipe):
    """The UNet with text-image grounding, image_project and the normalised reference-image feature equal diffusers'."""
    keys = ("boxes", "masks", "phrases_masks", "image_masks", "phrases_embeddings", "image_embeddings")
    grounding = tuple(Tensor(NETS[f"unet:{k}"]) for k in keys) + (Tensor(1.0, ms.float32),)
    args = tuple(Tensor(NETS[f"unet:{k}"]) for k in ("sample", "timestep", "context"))
    got = pipe.unet(*args, gligen=grounding).asnumpy()
    assert _rel(got, NETS["unet:expected"]) <= 1e-5
    assert _rel(pipe.unet(*args).asnumpy(), NETS["unet:expected"]) > 1e-2  # the grounding matters
    names = [p.name for p in pipe.unet.get_parameters()]
    assert names == [k for k, _ in pipe.unet.parameters_and_names()]  # unique, path-named (graph mode needs it)
    project = pipe.extra["image_project"]
    assert _rel(project(Tensor(NETS["project:input"])).asnumpy(), NETS["project:expected"]) <= 1e-5
    feature = image_feature(pipe, PIL.Image.fromarray(NETS["feature:image"]), 28.7).asnumpy()
    assert _rel(feature, NETS["feature:expected"].reshape(-1)) <= 1e-5
    assert abs(np.linalg.norm(feature) - 28.7) < 1e-4


@pytest.mark.parametrize("name", ["anhnct/Gligen_Text_Image/unet", "anhnct/Gligen_Text_Image/image_project"])
def test_released_structure(name):
    """Every parameter of the released nets maps to one msdiff parameter of the same shape (built through the
    registry as the loader does)."""
    with gzip.open(FIXTURES / "structure.json.gz") as f:
        s = json.loads(f.read())[name]
    entry = net_entry(s["config"]["_class_name"])
    with no_init_parameters():
        cell = entry.cls(entry.config_from_diffusers(s["config"]))
    ours = {k: list(p.shape) for k, p in cell.parameters_and_names()}
    theirs = {entry.map_weights(k): v for k, v in s["shapes"].items()}
    assert len(theirs) == len(s["shapes"]) and ours == theirs
    if name.endswith("unet"):
        assert {k for k in ours if k.startswith("position_net.")} >= {"position_net.linears_text.0.weight",
                                                                      "position_net.linears_image.4.bias",
                                                                      "position_net.null_image_feature"}


@pytest.mark.parametrize("change,match", [
    (dict(gligen_boxes=[[0.1, 0.2, 1.3, 0.8], [0.5, 0.4, 0.9, 0.9]]), r"gligen_boxes\[0\].*outside \[0, 1\]"),
    (dict(gligen_boxes=[[0.1, 0.2, 0.5, 0.8]]), "gligen_phrases has 2 entries but gligen_boxes has 1"),
    (dict(gligen_images=[None]), "gligen_images has 1 entries but gligen_boxes has 2"),
    (dict(gligen_phrases=[None, None], gligen_images=[None, "x.png"]), r"gligen_boxes\[0\] has neither a phrase"),
    (dict(gligen_phrases=None, gligen_images=None), "needs gligen_phrases and / or gligen_images"),
    (dict(gligen_boxes=None), "needs gligen_boxes"),
    (dict(gligen_images=PIL.Image.new("RGB", (8, 8))), "gligen_images must be a list"),
    (dict(input_images_mask=[1] * 31), "input_images_mask must be a number or a list of at most 30"),
    (dict(gligen_scheduled_sampling_beta=1.5), "gligen_scheduled_sampling_beta must be in"),
])
def test_bad_input(pipe, change, match):
    kwargs, _ = case_kwargs(FIXTURES, "text_image", CASES["text_image"])
    with pytest.raises(ValueError, match=match):
        gligen_text_image(pipe, **dict(kwargs, **change))


@pytest.mark.parametrize("missing", ["image_encoder", "image_project", "processor"])
def test_missing_image_component(pipe, missing):
    kwargs, _ = case_kwargs(FIXTURES, "text_image", CASES["text_image"])
    part = dataclasses.replace(pipe, extra={k: v for k, v in pipe.extra.items() if k != missing})
    with pytest.raises(ValueError, match=f"need the pipeline's {missing}"):
        gligen_text_image(part, **kwargs)


def test_family_and_unet_kind():
    assert family_of("StableDiffusionGLIGENTextImagePipeline").recipe is gligen_text_image
    text_box = msdiff.load_pipeline(packed_folder(FIXTURES.parent / "sd_k_gligen", "gligen"))
    with pytest.raises(ValueError, match="needs a GLIGEN UNet with attention_type 'gated-text-image'"):
        gligen_text_image(text_box, prompt="x", gligen_phrases=["a"], gligen_boxes=[[0, 0, 1, 1]])


def test_msdiff_generate_dispatches(pipe, tmp_path):
    """`msdiff generate` runs the text-image recipe (--gligen-phrases / --gligen-images, '-' for none) and the
    text-box one with --gligen-inpaint-image: each PNG equals the recipe called directly."""
    from msdiff.cli import main

    ref = tmp_path / "ref.png"
    PIL.Image.fromarray(dict(np.load(FIXTURES / "text_image.npz"))["image_1"]).save(ref)
    out = tmp_path / "out.png"
    assert main(["generate", "--model", str(pipeline_folder(FIXTURES)), "--prompt", "a dog", "--steps", "2", "--seed",
                 "3", "--mode", "pynative", "--out", str(out), "--gligen-phrases", "a dog", "-", "--gligen-images",
                 "-", str(ref), "--gligen-boxes", "0.1,0.1,0.5,0.9; 0.5,0.5,1,1"]) == 0
    want = gligen_text_image(pipe, "a dog", gligen_phrases=["a dog", None], gligen_images=[None, str(ref)],
                             gligen_boxes=[[0.1, 0.1, 0.5, 0.9], [0.5, 0.5, 1.0, 1.0]], num_inference_steps=2,
                             seed=3, mode="pynative")[0]
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(out).convert("RGB")), np.asarray(want))
    folder = inpaint_folder(FIXTURES, "text_box")
    assert main(["generate", "--model", str(folder), "--prompt", "a dog", "--steps", "2", "--seed", "3", "--mode",
                 "pynative", "--out", str(out), "--gligen-phrases", "a dog", "--gligen-boxes", "0.1,0.1,0.5,0.9",
                 "--gligen-inpaint-image", str(ref)]) == 0
    want = gligen(msdiff.load_pipeline(folder), "a dog", gligen_phrases=["a dog"], gligen_boxes=[[0.1, 0.1, 0.5, 0.9]],
                  gligen_inpaint_image=str(ref), num_inference_steps=2, seed=3, mode="pynative")[0]
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(out).convert("RGB")), np.asarray(want))
