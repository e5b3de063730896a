"""Named coefficient columns: every row column has a name, and every step reads its row only by those names."""
import numpy as np
import pytest
from mindspore import Tensor, ops

from msdiff import samplers
from msdiff.samplers import SAMPLERS, Schedule
from msdiff.samplers.denoiser import PREDICTION_COLUMNS, Columns
from _sampler_common import CASES, analytic_model, load


def _check_named(schedule, where):
    cols = schedule.columns
    assert schedule.coefs.ndim == 2 and schedule.coefs.shape[1] == len(cols), (where, schedule.coefs.shape, cols)
    assert tuple(cols[:len(PREDICTION_COLUMNS)]) == PREDICTION_COLUMNS, (where, cols)
    assert len(set(cols)) == len(cols), (where, cols)


@pytest.mark.parametrize("class_name", sorted(SAMPLERS))
def test_every_sampler_names_every_column(class_name):
    """Default config of each diffusers class, and every fixture config of it: one name per row column."""
    sampler = SAMPLERS[class_name]()
    for n in (4, 10):
        _check_named(sampler.schedule(n), (class_name, n))
    _check_named(samplers.img2img_schedule(sampler, 10, 0.6), (class_name, "img2img"))
    for name in CASES:
        z, config, kwargs = load(name)
        if config["_class_name"] == class_name:
            _check_named(samplers.from_config(config, **kwargs).schedule(4), name)


class _Recorder:
    """A coefficient row that records which columns a step reads."""

    def __init__(self, row):
        self.row, self.read = row, set()

    def __getitem__(self, i):
        self.read.add(i)
        return self.row[i]


def _columns_read(name):
    z, config, kwargs = load(name)
    sampler = samplers.from_config(config, **kwargs)
    schedule = sampler.schedule(4)
    model = analytic_model(config.get("variance_type") in ("learned", "learned_range"))
    x = Tensor(z["latent"]) * Tensor(np.float32(schedule.init_noise_sigma))
    state, read = sampler.init_state(x), set()
    for i in range(min(3, len(schedule))):
        row = _Recorder(schedule.rows()[i])
        out = model(schedule.scale_model_input(x, i), schedule.timestep(i))
        x, state = sampler.step(x, out, tuple(state), row, ops.zeros_like(x) if sampler.stochastic else None)
        read |= row.read
    return sampler.name, schedule.columns, read


def test_steps_read_every_named_column_and_no_other():
    """Over the fixture configs (which cover every option branch), each sampler's step reads all its own columns."""
    seen = {}
    for name in CASES:
        sampler_name, columns, read = _columns_read(name)
        assert read <= set(range(len(columns))), (name, sorted(read), columns)
        cols, union = seen.setdefault(sampler_name, (columns, set()))
        assert cols == columns, (name, cols, columns)
        union |= read
    for sampler_name, (columns, union) in seen.items():
        unread = [c for i, c in enumerate(columns) if i not in union and c not in PREDICTION_COLUMNS]
        assert not unread, (sampler_name, unread)


def test_unnamed_or_misnamed_columns_are_refused():
    cols = Columns("sigma", "dt")
    pred = samplers.prediction_coefficients("epsilon", np.ones(3), np.full(3, 0.5))
    table = cols.table(pred, sigma=np.full(3, 0.5), dt=-0.5)
    assert table.shape == (3, 8) and cols.dt == 7 and np.all(table[:, cols.dt] == -0.5)
    with pytest.raises(ValueError, match="missing columns \\['dt'\\]"):
        cols.table(pred, sigma=0.5)
    with pytest.raises(ValueError, match="unknown columns \\['dx'\\]"):
        cols.table(pred, sigma=0.5, dt=0.1, dx=0.0)
    with pytest.raises(ValueError, match="distinct"):
        Columns("sigma", "sigma")
    with pytest.raises(ValueError, match="distinct"):
        Columns("table")
    with pytest.raises(ValueError, match="8 columns"):
        cols.stack([np.zeros(9)])
    good = samplers.from_config(load("euler_sd")[1]).schedule(3)
    with pytest.raises(ValueError, match="one name per column"):
        Schedule(timesteps=good.timesteps, sigmas=good.sigmas, init_noise_sigma=good.init_noise_sigma,
                 input_div=good.input_div, coefs=np.concatenate([good.coefs, good.coefs[:, :1]], 1),
                 needs_noise=good.needs_noise, noise_level=good.noise_level,
                 num_inference_steps=good.num_inference_steps, columns=good.columns)
