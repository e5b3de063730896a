"""msdiff.settings: one default mode for recipes, `sample` and the CLI; the progress bar and its switch."""
import io

import numpy as np
import pytest

from msdiff import settings


@pytest.fixture
def builtin_mode(monkeypatch):
    """The built-in default, as a user gets it (the suite's conftest sets PyNative for itself)."""
    monkeypatch.delenv("MSDIFF_MODE", raising=False)
    saved = settings._STATE["mode"]
    settings.set_default_mode(None)
    yield
    settings.set_default_mode(saved)


def test_default_mode_is_graph_and_can_be_set(builtin_mode, monkeypatch):
    assert settings.default_mode() == "graph" and settings.resolve_mode(None) == "graph"
    monkeypatch.setenv("MSDIFF_MODE", "pynative")
    assert settings.resolve_mode(None) == "pynative"
    settings.set_default_mode("graph")
    assert settings.resolve_mode(None) == "graph" and settings.resolve_mode("pynative") == "pynative"
    with pytest.raises(ValueError, match="mode must be 'pynative' or 'graph', got 'eager'"):
        settings.set_default_mode("eager")
    monkeypatch.setenv("MSDIFF_MODE", "jit")
    settings.set_default_mode(None)
    with pytest.raises(ValueError, match="MSDIFF_MODE must be"):
        settings.default_mode()


def test_every_recipe_defaults_to_the_one_default():
    """No recipe hard-codes its own default mode: each `mode` keyword defaults to None (= settings.default_mode)."""
    import inspect

    from msdiff.recipes import families
    for fam in families():
        params = inspect.signature(fam.recipe).parameters
        if "mode" in params:
            assert params["mode"].default is None, f"{fam.name}: mode defaults to {params['mode'].default!r}"


def test_cli_mode_resolves_to_the_default(builtin_mode):
    from msdiff.cli import _parser
    args = _parser().parse_args(["generate"])
    assert args.mode is None
    assert settings.resolve_mode(args.mode) == "graph"


class _Tty(io.StringIO):
    def isatty(self):
        return True


def _run_sample():
    import mindspore as ms

    from msdiff.conditioning import make_schedule
    from msdiff.samplers import resolve_sampler, sample
    smp = resolve_sampler(None, "ddim", default={"_class_name": "DDIMScheduler", "num_train_timesteps": 1000})
    schedule = make_schedule(smp, 3)
    x = ms.Tensor(np.ones((1, 1, 2, 2), np.float32))
    return sample(lambda x_in, t: x_in * 0.0, x, schedule, smp, mode="pynative")


def test_progress_bar_in_a_terminal_and_its_switch(monkeypatch):
    monkeypatch.delenv("MSDIFF_PROGRESS", raising=False)
    err = _Tty()
    monkeypatch.setattr("sys.stderr", err)
    _run_sample()
    assert "3/3" in err.getvalue()
    err.truncate(0)
    err.seek(0)
    with settings.progress_bar_config(disable=True):
        _run_sample()
    assert err.getvalue() == ""
    monkeypatch.setenv("MSDIFF_PROGRESS", "0")
    _run_sample()
    assert err.getvalue() == ""


def test_no_progress_bar_when_not_interactive(monkeypatch):
    monkeypatch.delenv("MSDIFF_PROGRESS", raising=False)
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    _run_sample()
    assert err.getvalue() == ""
    settings.set_progress_bar_config(desc="mine")
    try:
        monkeypatch.setenv("MSDIFF_PROGRESS", "1")
        _run_sample()
        assert "mine" in err.getvalue() and "3/3" in err.getvalue()
    finally:
        settings.set_progress_bar_config()
