"""Every recipe answers diffusers' argument names that msdiff spells differently with a TypeError naming msdiff's
equivalent (generator -> seed / noise, callback_on_step_end -> callback, scheduler -> sampler), before any work."""
import pytest

from msdiff.recipes import families
from msdiff.recipes.family import RENAMED

CASES = {"generator": "seed=", "callback_on_step_end": "callback=", "scheduler": "sampler="}


@pytest.mark.parametrize("fam", families(), ids=lambda f: f.name)
@pytest.mark.parametrize("name", sorted(CASES))
def test_diffusers_names_are_mapped(fam, name):
    assert CASES[name] in RENAMED[name]
    with pytest.raises(TypeError, match=f"has no argument '{name}' \\(diffusers'\\): use {CASES[name]}"):
        fam.recipe(None, **{name: None})
