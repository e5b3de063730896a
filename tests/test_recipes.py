"""Recipes vs diffusers 0.35.2 pipelines on tiny components (tests/fixtures/pipelines, tools/fixtures/pipelines.py).

Each case replays the pipeline call's arguments, explicit latents and recorded extra noise, and
compares the "np" images: max abs error <= 1e-4 in fp32. This file runs PyNative and the
behaviour tests; tests/test_recipes_graph.py runs the same cases in graph mode.
"""
import json
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

import msdiff
from msdiff import recipes
from tools.support.pipelines import pipeline_call

FIX = Path(__file__).parent / "fixtures" / "pipelines"
CASES = json.loads((FIX / "cases.json").read_text())
TOL = 1e-4

_COMPONENTS = {}


def components(folder: str, mode: str = "pynative"):
    """load_pipeline of a fixture folder, once per test session and mode.

    Graph-mode tests get their own nets: a PyNative call of a net makes mindspore.jit recompile
    graphs that contain it (measured 20-30 s per recompile), so the modes are kept apart here.
    """
    if (folder, mode) not in _COMPONENTS:
        _COMPONENTS[folder, mode] = msdiff.load_pipeline(FIX / folder)
    return _COMPONENTS[folder, mode]


def case_call(name: str, mode: str = "pynative"):
    """(recipe, components, kwargs, expected) replaying fixture case `name`."""
    recipe, kwargs, expected = pipeline_call(FIX, name, CASES[name])
    return recipe, components(CASES[name]["folder"], mode), kwargs, expected


def _np(out):
    return out.asnumpy() if isinstance(out, Tensor) else np.asarray(out)


def check_case(name: str, mode: str) -> float:
    """Run fixture case `name` in `mode`; assert max abs error <= TOL and return it."""
    recipe, comps, kwargs, expected = case_call(name, mode)
    out = _np(recipe(comps, mode=mode, **kwargs))
    assert out.shape == expected.shape
    err = float(np.abs(out - expected).max())
    assert err <= TOL, f"{name} [{mode}]: max abs error {err:.3g} > {TOL}"
    return err


@pytest.mark.parametrize("name", sorted(CASES))
def test_recipe_matches_diffusers(name):
    check_case(name, "pynative")


@pytest.mark.parametrize("second", ["sdxl_image_to_image_start", "sdxl_refiner_image_to_image_start"])
def test_refiner_hand_off_chains(second):
    """SD-XL base with denoising_end, then img2img (base or refiner folder) with denoising_start on msdiff's latents."""
    _, comps, base_kwargs, _ = case_call("sdxl_text_to_image_end")
    latents = recipes.text_to_image(comps, **base_kwargs)
    _, comps_2, kwargs, expected = case_call(second)
    kwargs["image"] = latents
    out = recipes.image_to_image(comps_2, **kwargs)
    assert float(np.abs(out - expected).max()) <= TOL


def _sd_t2i(**kw):
    args = dict(prompt="a photo of a cat", negative_prompt="blurry", num_inference_steps=2, height=64, width=64,
                output_type="np", sampler={**CASES["sd_text_to_image_euler"]["scheduler"]})
    args.update(kw)
    return recipes.text_to_image(components("sd"), **args)


def test_same_seed_same_image_other_seed_other_image():
    a, b, c = _sd_t2i(seed=1), _sd_t2i(seed=1), _sd_t2i(seed=2)
    assert np.array_equal(a, b)
    assert float(np.abs(a - c).max()) > 1e-2


def test_same_seed_image_to_image_draws_vae_and_noise_from_seed():
    _, comps, kwargs, _ = case_call("sd_image_to_image")
    kwargs.pop("noise")
    a = recipes.image_to_image(comps, seed=3, **kwargs)
    b = recipes.image_to_image(comps, seed=3, **kwargs)
    c = recipes.image_to_image(comps, seed=4, **kwargs)
    assert np.array_equal(a, b) and float(np.abs(a - c).max()) > 1e-3


def test_callback_sees_every_step_and_can_stop():
    seen = []
    _sd_t2i(seed=0, num_inference_steps=3, callback=lambda i, x: seen.append((i, tuple(x.shape))))
    assert seen == [(0, (1, 4, 8, 8)), (1, (1, 4, 8, 8)), (2, (1, 4, 8, 8))]
    stops = []
    _sd_t2i(seed=0, num_inference_steps=3, callback=lambda i, x: stops.append(i) or i == 0)
    assert stops == [0]


def test_pil_output_and_image_inputs(tmp_path):
    images = _sd_t2i(seed=0, output_type="pil", num_images_per_prompt=2)
    assert len(images) == 2 and images[0].size == (64, 64) and images[0].mode == "RGB"
    _, comps, kwargs, _ = case_call("sd_image_to_image")
    pil = kwargs["image"]
    path = tmp_path / "in.png"
    pil.save(path)
    outs = [recipes.image_to_image(comps, **dict(kwargs, image=img)) for img in (pil, np.asarray(pil), str(path))]
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])


def test_latent_output_decodes_to_np_output():
    lat = _sd_t2i(seed=5, output_type="latent")
    img = recipes.postprocess(recipes.decode(components("sd"), lat), "np")
    assert np.array_equal(img, _sd_t2i(seed=5))


def test_size_not_divisible_by_vae_factor():
    with pytest.raises(ValueError, match="multiples of 8"):
        _sd_t2i(seed=0, height=60)


def test_mask_of_wrong_size():
    _, comps, kwargs, _ = case_call("sd_inpaint")
    kwargs["mask_image"] = kwargs["mask_image"].resize((32, 32))
    with pytest.raises(ValueError, match="mask_image has size 32x32"):
        recipes.inpaint(comps, **kwargs)


def test_long_prompt_warns_and_truncates():
    long = "a photo of a cat " * 40
    with pytest.warns(UserWarning, match="truncated because CLIP can only handle sequences up to 77"):
        emb = recipes.encode_prompt(components("sd"), long, guidance=False)
    assert emb.prompt_embeds.shape == (1, 77, 16)


def test_bad_arguments():
    with pytest.raises(ValueError, match="output_type"):
        _sd_t2i(seed=0, output_type="jpeg")
    with pytest.raises(ValueError, match="mode"):
        _sd_t2i(seed=0, mode="eager")
    with pytest.raises(ValueError, match="needs more than the 0 noise arrays"):
        _sd_t2i(noise=[])
    with pytest.raises(ValueError, match="noise: draw 0 has shape"):
        _sd_t2i(noise=[np.zeros((1, 4, 4, 4), np.float32)])


def test_non_finite_error_names_first_stage():
    lat = np.zeros((1, 4, 8, 8), np.float32)
    lat[0, 0, 0, 0] = np.nan
    with pytest.raises(recipes.NonFiniteError, match="initial latents.*dtype='float32'"):
        _sd_t2i(latents=lat)


def test_fp16_components_decode_with_fp32_vae():
    import mindspore as ms

    comps = msdiff.load_pipeline(FIX / "sd", dtype="float16")
    out = recipes.text_to_image(comps, "a photo of a cat", num_inference_steps=1, height=64, width=64, seed=0,
                                output_type="np")
    assert np.isfinite(out).all() and out.shape == (1, 64, 64, 3)
    assert recipes.steps.vae_in(comps).compute_dtype == ms.float32
    ref = _sd_t2i(seed=0, negative_prompt=None, sampler=None, num_inference_steps=1)
    assert float(np.abs(out - ref).max()) < 0.05


def test_sampler_by_name_uses_the_checkpoint_config():
    by_name = _sd_t2i(seed=0, sampler="euler")
    by_config = _sd_t2i(seed=0)
    assert np.array_equal(by_name, by_config)
    with pytest.raises(ValueError, match="unknown sampler 'nope'"):
        _sd_t2i(seed=0, sampler="nope")


def test_public_steps_compose_to_the_recipe():
    """The README's step-by-step pipeline gives the recipe's image exactly."""
    from msdiff import conditioning, samplers
    from msdiff.recipes import sd, steps

    c = components("sd")
    emb = steps.encode_prompt(c, "a cat", "blurry")
    smp = samplers.resolve_sampler(c.scheduler)
    sch = smp.schedule(3)
    noise = steps.NoiseSource(seed=0)
    x = steps.prepare_latents(c, 1, 64, 64, noise, init_noise_sigma=sch.init_noise_sigma)
    cfg = conditioning.CFG(7.5)
    model = conditioning.compose(c.unet, sd.sd_inputs(c, emb, sd.MicroConditioning(), guidance_scale=7.5, height=64,
                                                      width=64, guidance=cfg), guidance=cfg)
    x = samplers.sample(model, x, sch, smp, noise, mode="pynative")
    by_steps = steps.postprocess(steps.decode(c, x), "np")
    by_recipe = recipes.text_to_image(c, "a cat", "blurry", num_inference_steps=3, height=64, width=64, seed=0,
                                      output_type="np")
    assert np.array_equal(by_steps, by_recipe)


def test_non_finite_error_names_the_denoising_step():
    """A NaN planted in a UNet weight after loading makes the first step NaN: the error names that step."""
    c = msdiff.load_pipeline(FIX / "sd")
    name, p = next((n, p) for n, p in c.unet.parameters_and_names() if "conv_in" in n and "weight" in n)
    p.set_data(ms.Tensor(np.full(p.shape, np.nan, np.float32)))
    with pytest.raises(recipes.NonFiniteError, match=r"denoising step 0 \(timestep"):
        recipes.text_to_image(c, "a cat", num_inference_steps=2, height=64, width=64, seed=0)


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_guidance_scale_is_refused(value):
    with pytest.raises(ValueError, match="guidance_scale must be a finite number"):
        _sd_t2i(seed=0, guidance_scale=value)
