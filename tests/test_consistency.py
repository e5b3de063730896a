"""msdiff.recipes.consistency against diffusers 0.35.2 ConsistencyModelPipeline (tests/fixtures/unet_2d/consistency.*):
the class-conditional tiny UNet (one-step, 3-step and custom timesteps [22, 0]) and the consistency-model style
one (scale-shift resnets, resnet resamplers; 2-step), CMStochasticIterativeScheduler, recorded noise; max abs
<= 1e-4 in PyNative and graph mode. The sampler's custom-timestep schedule against set_timesteps(timesteps=...),
and diffusers' validation of custom timesteps.
"""
import json
from pathlib import Path

import numpy as np
import pytest

import msdiff
from msdiff.io import Components
from msdiff.recipes.consistency import consistency
from _cases import mode_cases

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "unet_2d"
REF = np.load(FIXTURES / "consistency.npz")
META = json.loads((FIXTURES / "consistency.json").read_text())
UNET = {}


def _components(unet: str = "class_cond"):
    if unet not in UNET:
        UNET[unet] = msdiff.load(FIXTURES / unet)
    scheduler = dict(META["scheduler"], _class_name="CMStochasticIterativeScheduler")
    return Components(unet=UNET[unet], scheduler=scheduler)


def _noise(name):
    return [REF[f"{name}_noise_{k}"] for k in range(len([f for f in REF.files if f.startswith(name + "_noise_")]))]


@pytest.mark.parametrize("name,mode", mode_cases(sorted(META["runs"]), graph_name="multistep"))
def test_consistency_matches_diffusers(name, mode):
    run = META["runs"][name]
    steps = {k: run[k] for k in ("num_inference_steps", "timesteps") if k in run}
    images = consistency(_components(run.get("unet", "class_cond")), batch_size=2, class_labels=run["class_labels"],
                         noise=_noise(name), output_type="np", mode=mode, **steps)
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


def test_refuses_other_schedulers():
    components = Components(unet=_components().unet, scheduler={"_class_name": "DDPMScheduler"})
    with pytest.raises(ValueError, match="CMStochasticIterativeScheduler"):
        consistency(components, class_labels=[0], seed=0)


@pytest.mark.parametrize("name", sorted(META["schedules"]))
def test_custom_timestep_schedule_matches_set_timesteps(name):
    from msdiff.samplers import from_config

    timesteps = META["schedules"][name]
    config = dict(META["scheduler"], _class_name="CMStochasticIterativeScheduler")
    schedule = from_config(config, timesteps=tuple(timesteps)).schedule(len(timesteps))
    np.testing.assert_array_equal(schedule.sigmas.astype(np.float32), REF[f"schedule_{name}_sigmas"])
    np.testing.assert_allclose(np.asarray(schedule.timesteps, np.float64), REF[f"schedule_{name}_timesteps"],
                               rtol=1e-6, atol=0)


@pytest.mark.parametrize("timesteps, match", [([0, 22], "descending"), ([22, 22, 0], "descending"),
                                              ([40, 0], "num_train_timesteps"), ([5, -1], "an integer >= 0"),
                                              ([], "non-empty"), ([22.5, 0], "an integer >= 0")])
def test_bad_custom_timesteps(timesteps, match):
    with pytest.raises(ValueError, match=match):
        consistency(_components(), batch_size=1, timesteps=timesteps, class_labels=[0], seed=0)


def test_num_inference_steps_and_timesteps_are_exclusive():
    with pytest.raises(ValueError, match="only one of"):
        consistency(_components(), batch_size=1, num_inference_steps=2, timesteps=[22, 0], class_labels=[0], seed=0)
    from msdiff.samplers import from_config
    sampler = from_config(dict(META["scheduler"], _class_name="CMStochasticIterativeScheduler"), timesteps=(22, 0))
    with pytest.raises(ValueError, match="custom timesteps"):
        sampler.schedule(3)
