"""Sampler parity with diffusers 0.35.2: schedules, trajectories (PyNative and jit), img2img, add_noise."""
import numpy as np
import pytest
from mindspore import Tensor

from msdiff import samplers
from _sampler_common import CASES, TRAJ_STEPS, compile_count, load, max_rel, rel_l2, run

SCHEDULE_TOL = 1e-6
TRAJ_TOL = 1e-5
JIT_STEPS = 10
# every sampler class and option branch (stochastic, multistep, two-stage, thresholding, learned variance)
JIT_CASES = ["pndm_prk", "dpm_3m_sde_karras", "ddim_eta", "ddim_linspace_sample_thresh", "ddpm_learned_range", "ddpm_learned", "pndm_sd",
             "lcm_v_clip", "euler_karras_v", "euler_a_sd", "heun_karras_v_clip", "dpm_2m_karras",
             "dpm_sde_heun_trailing", "dpm_1_sample_thresh", "lms_karras_v_order3", "kdpm2_karras_v",
             "kdpm2_a_leading_v", "edm_euler_exp_v_sigma_min", "cm_default", "flow_dynamic_terminal",
             "unipc_v_leading_bh1", "unipc_sample_thresh_trailing"]


def _init_sigma(z, n):
    return dict(z["init_noise_sigma"].tolist())[n]


def _learned(config):
    return config.get("variance_type") in ("learned", "learned_range")


# The reference itself is off here: torch's float32 sqrt on this CPU build is not correctly rounded (up to
# 0.75 ulp, e.g. sqrt(2**24 - 1) -> 4096.0 instead of 4095.9998), and these two cases amplify that last-ulp
# difference: zero-SNR Euler's first step from sigma_max = 4096 to a ~100x smaller sigma, and KDPM2-ancestral's
# sigma_down = sqrt(sigma_next**2 - sigma_up**2), a cancellation, whose log-midpoint sets a timestep. msdiff keeps
# correctly rounded float32 arithmetic; see the issue-5 report for the measured errors.
TORCH_SQRT = "diffusers' reference depends on torch's non-correctly-rounded float32 sqrt"
KNOWN = {("schedules", "kdpm2_a_default"), ("pynative", "euler_zero_snr_trailing")}


def _cases(kind, names):
    return [pytest.param(n, marks=pytest.mark.xfail(reason=TORCH_SQRT, strict=True)) if (kind, n) in KNOWN else n
            for n in names]


@pytest.mark.parametrize("name", _cases("schedules", CASES))
def test_schedules(name):
    z, config, kwargs = load(name)
    sampler = samplers.from_config(config, **kwargs)
    counts = sorted({int(k.split("_")[-1]) for k in z if k.startswith("timesteps_")})
    for n in sorted(int(k.split("_")[-1]) for k in z if k.startswith("fails_")):
        with pytest.raises(ValueError):
            sampler.schedule(n)
    for n in counts:
        if np.isnan(z.get(f"sigmas_{n}", 0.0)).any():
            with pytest.raises(ValueError, match="decreasing"):
                sampler.schedule(n)
            continue
        s = sampler.schedule(n)
        assert max_rel(s.timesteps, z[f"timesteps_{n}"]) <= SCHEDULE_TOL, (n, s.timesteps, z[f"timesteps_{n}"])
        if f"sigmas_{n}" in z:
            assert max_rel(s.sigmas, z[f"sigmas_{n}"]) <= SCHEDULE_TOL, (n, s.sigmas, z[f"sigmas_{n}"])
        assert max_rel(s.init_noise_sigma, _init_sigma(z, n)) <= SCHEDULE_TOL


@pytest.mark.parametrize("name", _cases("pynative", CASES))
def test_trajectory_pynative(name):
    z, config, kwargs = load(name)
    sampler = samplers.from_config(config, **kwargs)
    for n in TRAJ_STEPS:
        if f"fails_{n}" in z:
            continue
        traj = run(sampler, sampler.schedule(n), z, n, _learned(config))
        ref = z[f"traj_{n}"]
        assert traj.shape == ref.shape
        errs = [rel_l2(a, b) for a, b in zip(traj, ref)]
        assert max(errs) <= TRAJ_TOL, (n, errs)


@pytest.mark.parametrize("name", JIT_CASES)
def test_trajectory_jit_compiles_once(name):
    z, config, kwargs = load(name)
    sampler = samplers.from_config(config, **kwargs)
    before = compile_count()
    for n in (JIT_STEPS, 3):
        if f"fails_{n}" in z:
            continue
        traj = run(sampler, sampler.schedule(n), z, n, _learned(config), jit=True)
        errs = [rel_l2(a, b) for a, b in zip(traj, z[f"traj_{n}"])]
        assert max(errs) <= TRAJ_TOL, (n, errs)
    assert compile_count() - before == 1


@pytest.mark.parametrize("name", CASES)
def test_img2img_and_add_noise(name):
    z, config, kwargs = load(name)
    sampler = samplers.from_config(config, **kwargs)
    s = samplers.img2img_schedule(sampler, 10, 0.6)
    assert max_rel(s.timesteps, z["img2img_timesteps"]) <= SCHEDULE_TOL
    x0 = Tensor(z["latent"])
    noisy = samplers.add_noise(s, x0, Tensor(z["img2img_noise"]), 0).asnumpy()
    assert rel_l2(noisy, z["img2img_noisy"]) <= TRAJ_TOL
