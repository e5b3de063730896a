"""Sampler API: bad input, guidance helpers, loop control."""
import numpy as np
import pytest
from mindspore import Tensor

from msdiff import samplers
from msdiff.samplers import schedules
from _sampler_common import analytic_model, load

DDIM = {"_class_name": "DDIMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}


@pytest.mark.parametrize("n", [0, -3, 1001])
def test_bad_num_inference_steps(n):
    with pytest.raises(ValueError, match="num_inference_steps"):
        samplers.from_config(DDIM).schedule(n)


@pytest.mark.parametrize("strength", [0.0, -0.1, 1.5])
def test_bad_strength(strength):
    with pytest.raises(ValueError, match="strength"):
        samplers.img2img_schedule(samplers.from_config(DDIM), 10, strength)


def test_unknown_class_name():
    with pytest.raises(ValueError, match="FancyScheduler"):
        samplers.from_config({"_class_name": "FancyScheduler"})


@pytest.mark.parametrize("key,value", [("beta_schedule", "quadratic"), ("timestep_spacing", "random"),
                                       ("prediction_type", "x0")])
def test_unsupported_field_value(key, value):
    with pytest.raises(ValueError, match=repr(value)):
        samplers.from_config(dict(DDIM, **{key: value}))


def test_unsupported_dpm_options():
    with pytest.raises(ValueError, match="solver_order"):
        samplers.from_config({"_class_name": "DPMSolverMultistepScheduler", "solver_order": 4})
    with pytest.raises(ValueError, match="algorithm_type"):
        samplers.from_config({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver"})


def test_sigma_schedule_not_decreasing():
    schedules.check_decreasing(np.array([14.6, 3.0, 0.5]))
    with pytest.raises(ValueError, match="decreasing"):
        schedules.check_decreasing(np.array([14.6, 3.0, 3.0, 0.0]))
    with pytest.raises(ValueError, match="decreasing"):
        schedules.check_decreasing(np.array([1.0, 2.0]))
    euler = {"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": True, "sigma_min": 10.0, "sigma_max": 1.0}
    with pytest.raises(ValueError, match="decreasing"):
        samplers.from_config(euler).schedule(10)


def test_stochastic_sampler_needs_noise():
    z, config, kwargs = load("euler_a_sd")
    sampler = samplers.from_config(config)
    with pytest.raises(ValueError, match="noise"):
        samplers.sample(analytic_model(), Tensor(z["latent"]), sampler.schedule(3), sampler, mode="pynative")


def test_callback_stops_early():
    z, config, _ = load("ddim_sd")
    sampler = samplers.from_config(config)
    seen = []
    out = samplers.sample(analytic_model(), Tensor(z["latent"]), sampler.schedule(10), sampler,
                          callback=lambda i, x: seen.append(i) or i == 3, mode="pynative")
    assert seen == [0, 1, 2, 3]
    np.testing.assert_allclose(out.asnumpy(), z["traj_10"][3], rtol=1e-5, atol=1e-6)


def test_guidance_matches_formula():
    rng = np.random.RandomState(0)
    cond, uncond = rng.randn(2, 4, 3, 3).astype(np.float32), rng.randn(2, 4, 3, 3).astype(np.float32)
    guided = uncond + 7.5 * (cond - uncond)
    ax = (1, 2, 3)
    std_c, std_g = cond.std(axis=ax, ddof=1, keepdims=True), guided.std(axis=ax, ddof=1, keepdims=True)
    want = 0.7 * guided * (std_c / std_g) + 0.3 * guided
    got = samplers.combine_guidance(Tensor(uncond), Tensor(cond), 7.5, 0.7).asnumpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_from_config_stable_diffusion_v1_5():
    """The scheduler_config.json of runwayml/stable-diffusion-v1-5 (extra keys are ignored like diffusers does)."""
    config = {"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
              "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
              "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
              "clip_sample": False}
    sampler = samplers.from_config(config)
    schedule = sampler.schedule(50)
    assert sampler.name == "pndm" and len(schedule) == 51
    assert schedule.timesteps[:3].tolist() == [981, 961, 961] and schedule.timesteps[-1] == 1
    with pytest.raises(ValueError, match="eta"):
        samplers.from_config(config, eta=0.5)


def test_from_config_reuses_sampler_and_compiled_step():
    from _sampler_common import compile_count

    z, config, _ = load("dpm_2m")  # not among the parity test's JIT_CASES, which count their own compilations
    first = samplers.from_config(dict(config))
    assert samplers.from_config(dict(config)) is first
    x = Tensor(z["latent"])
    samplers.sample(analytic_model(), x, first.schedule(3), first, mode="graph")
    before = compile_count()
    again = samplers.from_config(dict(config))
    samplers.sample(analytic_model(), x, again.schedule(4), again, mode="graph")
    assert compile_count() == before
