"""Shared helpers of the sampler tests: fixture loading and the analytic model."""
import functools
import json
from pathlib import Path

import numpy as np
import mindspore as ms
from mindspore import Tensor, ops

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "samplers"
CASES = sorted(p.stem for p in FIXTURES.glob("*.npz"))
TRAJ_STEPS = (3, 10, 25)


def load(name):
    """The fixture arrays, config dict and step kwargs of one case."""
    z = dict(np.load(FIXTURES / f"{name}.npz"))
    return z, json.loads(z["config"].tobytes().decode()), json.loads(z["step_kwargs"].tobytes().decode())


def _tanh(y):
    # mindspore's float32 CPU tanh is off by up to 1e-4 relative; float64 then cast matches torch's float32 tanh
    return ops.tanh(y.astype(ms.float64)).astype(ms.float32)


@functools.lru_cache(maxsize=None)
def analytic_model(learned=False):
    """model(x, t) = tanh(0.5 x + t/1000) (+ predicted-variance channels), as the fixture script (one per kind, so
    graph mode reuses its compiled step)."""
    def model(x, t):
        out = _tanh(0.5 * x + t / 1000)
        if learned:
            out = ops.concat([out, 0.5 + 0.25 * _tanh(x)], axis=1)
        return out

    return model


def rel_l2(a, b):
    """Relative L2 error of a against the reference b."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def max_rel(a, b):
    """Max abs error of a against the reference b, relative to b's largest magnitude."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = float(np.abs(b).max()) if b.size else 0.0
    err = float(np.abs(a - b).max()) if b.size else 0.0
    return err / scale if scale > 0 else err


def run(sampler, schedule, z, n, learned, jit=False):
    """Trajectory (every call's sample) of the analytic model from the fixture latent."""
    from msdiff.samplers import NoiseSource, sample_steps

    x = Tensor(z["latent"]) * Tensor(np.float32(schedule.init_noise_sigma))
    noise = z.get(f"noise_{n}")  # the fixture's noise of call i, drawn by the loop only where the call needs it
    source = None if noise is None else NoiseSource(noise=[noise[i] for i in np.flatnonzero(schedule.needs_noise)])
    steps = sample_steps(analytic_model(learned), x, schedule, sampler, source, mode="graph" if jit else "pynative")
    return np.stack([x.asnumpy() for _, x in steps])


def compile_count():
    """Graphs compiled so far by mindspore.jit (its compile cache holds one phase per compilation)."""
    from mindspore.graph import api
    return len(api.ms_compile_cache)
