"""msdiff.recipes.consistency against diffusers 0.35.2 ConsistencyModelPipeline (tests/fixtures/unet_2d/consistency.*):
the class-conditional tiny UNet, CMStochasticIterativeScheduler, one- and 3-step, recorded noise; max abs <= 1e-4
in PyNative and graph mode.
"""
import json
from pathlib import Path

import numpy as np
import pytest

import msdiff
from msdiff.io import Components
from msdiff.recipes.consistency import consistency

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "unet_2d"
REF = np.load(FIXTURES / "consistency.npz")
META = json.loads((FIXTURES / "consistency.json").read_text())
UNET = {}


def _components():
    if "unet" not in UNET:
        UNET["unet"] = msdiff.load(FIXTURES / "class_cond")
    scheduler = dict(META["scheduler"], _class_name="CMStochasticIterativeScheduler")
    return Components(unet=UNET["unet"], scheduler=scheduler)


def _noise(name):
    return [REF[f"{name}_noise_{k}"] for k in range(len([f for f in REF.files if f.startswith(name + "_noise_")]))]


@pytest.mark.parametrize("name", sorted(META["runs"]))
@pytest.mark.parametrize("mode", ("pynative", "graph"))
def test_consistency_matches_diffusers(name, mode):
    run = META["runs"][name]
    images = consistency(_components(), batch_size=2, num_inference_steps=run["num_inference_steps"],
                         class_labels=run["class_labels"], noise=_noise(name), output_type="np", mode=mode)
    assert images.shape == REF[name].shape
    assert np.abs(images - REF[name]).max() <= 1e-4


def test_latents_are_scaled_like_the_first_draw():
    from mindspore import Tensor

    run = META["runs"]["onestep"]
    latents = Tensor(REF["onestep_noise_0"])
    images = consistency(_components(), batch_size=2, num_inference_steps=1, class_labels=run["class_labels"],
                         latents=latents, output_type="np", mode="pynative")
    assert np.abs(images - REF["onestep"]).max() <= 1e-4


def test_callback_and_pil_output():
    seen = []
    images = consistency(_components(), batch_size=1, num_inference_steps=2, class_labels=[2], seed=0,
                         callback=lambda i, x: seen.append(i), mode="pynative")
    assert seen == [0, 1] and len(images) == 1 and images[0].size == (8, 8)


def test_refuses_other_schedulers_and_custom_timesteps():
    components = Components(unet=_components().unet, scheduler={"_class_name": "DDPMScheduler"})
    with pytest.raises(ValueError, match="CMStochasticIterativeScheduler"):
        consistency(components, class_labels=[0], seed=0)
    with pytest.raises(NotImplementedError, match="timesteps"):
        consistency(_components(), timesteps=[22, 0], class_labels=[0], seed=0)
