"""Recipes in graph mode (the whole guided step compiled by mindspore.jit) vs diffusers, and vs PyNative.

One graph is compiled per UNet, sampler config, guidance kind and shape; the cases are ordered so
cases sharing those reuse it (the five SD-XL cases compile once, the two LCM cases once).
"""
import numpy as np
import pytest

from test_recipes import CASES, case_call, check_case

# cases sharing a compiled graph are adjacent; sorted() keeps the sdxl_* and lcm_* groups together
ORDER = sorted(CASES)


@pytest.mark.parametrize("name", ORDER)
def test_recipe_matches_diffusers_in_graph_mode(name):
    check_case(name, "graph")


@pytest.mark.parametrize("name", ["sdxl_text_to_image", "lcm_image_to_image", "sd_instruct_pix2pix"])
def test_pynative_and_graph_agree_for_a_seed(name):
    """Same seed, no recorded noise: every draw comes from the seed outside the graph, so modes agree."""
    results = []
    for mode in ("graph", "pynative"):
        recipe, comps, kwargs, _ = case_call(name, mode)
        for k in ("latents", "noise"):
            kwargs.pop(k, None)
        results.append(recipe(comps, seed=7, mode=mode, **kwargs))
    assert float(np.abs(results[0] - results[1]).max()) <= 1e-5
