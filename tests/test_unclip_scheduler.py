"""msdiff.samplers.unclip against diffusers 0.35.2's UnCLIPScheduler: timesteps and whole trajectories of an analytic
model (PyNative and graph), stepping to the next timestep as the unCLIP / Kandinsky prior pipelines do; and
DeepFloyd IF's DDPMScheduler settings (learned-range variance, dynamic thresholding) on msdiff's DDPM sampler."""
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, ops

from msdiff import samplers

FIX = Path(__file__).parent / "fixtures" / "kandinsky" / "unclip_scheduler.npz"
CONFIGS = {"prior": dict(variance_type="fixed_small_log", prediction_type="sample", clip_sample_range=10.0,
                         _class_name="UnCLIPScheduler"),
           "decoder": dict(variance_type="learned_range", prediction_type="epsilon", _class_name="UnCLIPScheduler"),
           "if_ddpm": dict(beta_schedule="squaredcos_cap_v2", variance_type="learned_range", thresholding=True,
                           dynamic_thresholding_ratio=0.95, sample_max_value=1.5, clip_sample=True,
                           prediction_type="epsilon", _class_name="DDPMScheduler")}


def _tanh(y):
    # float64 then cast: mindspore's float32 CPU tanh is ~1e-4 off torch's
    return ops.tanh(y.astype(ms.float64)).astype(ms.float32)


def _model(learned: bool):
    def model(x, t):
        out = _tanh(0.5 * x + t / 1000)
        return ops.concat([out, 0.5 + 0.25 * _tanh(x)], axis=1) if learned else out

    return model


@pytest.mark.parametrize("name,n,mode", [("prior", 3, "pynative"), ("prior", 25, "pynative"),
                                         ("decoder", 3, "pynative"), ("decoder", 25, "pynative"),
                                         ("decoder", 25, "graph"), ("if_ddpm", 25, "pynative")])
def test_trajectory(name, n, mode):
    with np.load(FIX) as f:
        d = {k.split(":")[1]: f[k] for k in f if k.startswith(f"{name}_{n}:")}
    sampler = samplers.from_config(CONFIGS[name])
    schedule = sampler.schedule(n)
    np.testing.assert_array_equal(schedule.timesteps, d["timesteps"])
    draws = iter(d["noise"][schedule.needs_noise])
    noise = (lambda shape: next(draws))
    learned = CONFIGS[name]["variance_type"] == "learned_range"
    got = [x.asnumpy() for _, x in samplers.sample_steps(_model(learned), Tensor(d["x"]), schedule,
                                                         sampler, noise, mode=mode)]
    for i, (a, b) in enumerate(zip(got, d["traj"])):
        rel = float(np.linalg.norm(a - b) / np.linalg.norm(b))
        assert rel <= 1e-5, f"{name} {n} steps {mode}: step {i} rel L2 {rel:.3g}"


def test_errors():
    for config, match in [(dict(beta_schedule="linear"), "squaredcos_cap_v2"),
                          (dict(prediction_type="v_prediction"), "prediction_type"),
                          (dict(variance_type="fixed_large"), "variance_type")]:
        with pytest.raises(ValueError, match=match):
            samplers.from_config(dict(config, _class_name="UnCLIPScheduler"))
    with pytest.raises(ValueError, match="at least 2"):
        samplers.from_config({"_class_name": "UnCLIPScheduler"}).schedule(1)
