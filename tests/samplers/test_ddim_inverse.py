"""DDIM inversion against diffusers 0.35.2's DDIMInverseScheduler (fixtures from tools/fixtures/sd_extras.py)."""
import json
from pathlib import Path

import numpy as np
import pytest
from mindspore import Tensor

from msdiff import samplers
from _sampler_common import analytic_model, max_rel, rel_l2

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sd_extras"
CONFIGS = json.loads((FIXTURES / "ddim_inverse.json").read_text())
REF = dict(np.load(FIXTURES / "ddim_inverse.npz"))
STEPS = (3, 10, 25)


def _trajectory(sampler, n, mode):
    steps = samplers.sample_steps(analytic_model(), Tensor(REF["latent"]), sampler.schedule(n), sampler, mode=mode)
    return np.stack([x.asnumpy() for _, x in steps])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_trajectory(name):
    sampler = samplers.from_config(CONFIGS[name])
    for n in STEPS:
        s = sampler.schedule(n)
        np.testing.assert_array_equal(s.timesteps, REF[f"{name}:timesteps_{n}"])
        traj, ref = _trajectory(sampler, n, "pynative"), REF[f"{name}:traj_{n}"]
        errs = [rel_l2(a, b) for a, b in zip(traj, ref)]
        assert traj.shape == ref.shape and max(errs) <= 1e-5, (n, errs)


def test_trajectory_graph():
    sampler = samplers.from_config(CONFIGS["sd"])
    assert max_rel(_trajectory(sampler, 10, "graph"), REF["sd:traj_10"]) <= 1e-5


def test_inversion_reaches_noise_level():
    """The schedule's noise_level at call i is the level of the sample the call receives (x0 at call 0)."""
    s = samplers.from_config(CONFIGS["default"]).schedule(10)
    np.testing.assert_array_equal(s.noise_level[0], [1.0, 0.0])
    assert np.all(np.diff(s.noise_level[:, 1]) > 0)


def test_errors():
    with pytest.raises(ValueError, match="timestep_spacing"):
        samplers.from_config(dict(CONFIGS["default"], timestep_spacing="linspace"))
    with pytest.raises(ValueError, match="prediction_type"):
        samplers.from_config(dict(CONFIGS["default"], prediction_type="flow_prediction"))
    with pytest.raises(ValueError, match="num_inference_steps"):
        samplers.from_config(CONFIGS["default"]).schedule(1001)
