"""Composed conditioning against diffusers 0.35.2: ControlNet img2img / inpainting (SD, SD-XL), MultiControlNet,
MultiAdapter, and a ControlNet plus a T2I-Adapter in one run (checked against a hand composition of diffusers'
models, as no diffusers pipeline has it). Images fp32 max abs <= 1e-4, PyNative and graph (one graph case per
kind of composition)."""
import importlib
from pathlib import Path

import numpy as np
import pytest

from msdiff import conditioning, samplers
from tools.support.control_mix import case_call

FIX = Path(__file__).parent / "fixtures" / "control_mix"
CASES = [("sd_controlnet_img2img", "pynative"), ("sd_controlnet_inpaint", "pynative"),
         ("sdxl_controlnet_img2img", "pynative"), ("sdxl_controlnet_inpaint", "graph"),
         ("sd_multi_controlnet", "graph"), ("sd_multi_adapter", "pynative"), ("sd_controlnet_adapter", "graph")]


@pytest.mark.parametrize("name,mode", CASES)
def test_composed_conditioning_matches_diffusers(name, mode):
    recipe, components, kwargs, expected = case_call(FIX, name)
    got = np.asarray(recipe(components, mode=mode, **kwargs))
    err = float(np.abs(got - expected).max())
    assert err <= 1e-4, f"{name} {mode}: max abs {err:.2e}"


def test_multi_controlnet_lists_must_match_the_nets():
    recipe, components, kwargs, _ = case_call(FIX, "sd_multi_controlnet")
    with pytest.raises(ValueError, match="controlnet_conditioning_scale has 3 entries for 2 ControlNets"):
        recipe(components, **dict(kwargs, controlnet_conditioning_scale=[1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="2 ControlNets need a list of 2 control images"):
        recipe(components, **dict(kwargs, image=kwargs["image"][0]))


def test_changing_scales_compiles_nothing_new():
    """Guidance, ControlNet scales and windows are per-call floats: a second run with other values reuses the
    compiled step (the same graph object is cached, and the cache does not grow)."""
    recipe, components, kwargs, _ = case_call(FIX, "sd_multi_controlnet")
    loop = importlib.import_module("msdiff.samplers.loop")
    recipe(components, mode="graph", **kwargs)
    before = sum(len(v) for v in loop._COMPILED.values())
    recipe(components, mode="graph", **dict(kwargs, guidance_scale=3.0, controlnet_conditioning_scale=[0.1, 0.9],
                                            control_guidance_end=[0.5, 1.0]))
    assert sum(len(v) for v in loop._COMPILED.values()) == before


def test_pieces_have_roles_and_refuse_strangers():
    with pytest.raises(TypeError, match="not a conditioning piece"):
        conditioning.compose(lambda x, t: x, object())
    model = conditioning.compose(lambda x, t: x, guidance=conditioning.CFG(2.0))
    assert isinstance(model, samplers.Model) and model.key[0][0] == "cfg"
