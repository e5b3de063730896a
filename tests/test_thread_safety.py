"""Loaded nets shared by threads in PyNative: calls are taken one at a time (MindSpore 2.10's PyNative executor
gave different numbers under concurrent calls even without msdiff: tools/pynative_threads.py reproduces it)."""
import copy
import json
import threading
import time
from dataclasses import dataclass

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn
from safetensors.numpy import save_file

import msdiff
from msdiff.blocks.layers import Linear
from msdiff.io import register_net, registry


@dataclass(frozen=True)
class DeepConfig:
    width: int = 16
    depth: int = 4


def config_from_diffusers(d: dict) -> DeepConfig:
    """Tiny config reader."""
    return DeepConfig(width=d.get("width", 16), depth=d.get("depth", 4))


def map_weights(key: str):
    """Identity."""
    return key


class Deep(nn.Cell):
    """`depth` linear + tanh layers."""

    def __init__(self, config: DeepConfig, dtype=ms.float32):
        super().__init__()
        self.layers = nn.CellList([Linear(config.width, config.width, dtype=dtype) for _ in range(config.depth)])

    def construct(self, x):
        for layer in self.layers:
            x = ms.ops.tanh(layer(x))
        return x


class Probe(Deep):
    """Deep that notes (PyNative only: Python side effects) how many calls are inside construct at once."""

    inside = 0
    most_inside = 0
    guard = threading.Lock()

    def construct(self, x):
        with Probe.guard:
            Probe.inside += 1
            Probe.most_inside = max(Probe.most_inside, Probe.inside)
        time.sleep(0.02)
        x = super().construct(x)
        with Probe.guard:
            Probe.inside -= 1
        return x


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    register_net("Deep", Deep)
    register_net("Probe", Probe)
    root = tmp_path_factory.mktemp("nets")
    rng = np.random.default_rng(0)
    state = {}
    for i in range(4):
        state[f"layers.{i}.weight"] = (rng.standard_normal((16, 16)) * 0.5).astype(np.float32)
        state[f"layers.{i}.bias"] = rng.standard_normal(16).astype(np.float32)
    for name in ("Deep", "Probe"):
        (root / name).mkdir()
        (root / name / "config.json").write_text(json.dumps({"_class_name": name}))
        save_file(state, str(root / name / "diffusion_pytorch_model.safetensors"))
    yield root
    registry.NETS.pop("Deep", None)
    registry.NETS.pop("Probe", None)


def most_concurrent(net, inputs, calls=3) -> tuple:
    """Two threads calling `net` `calls` times each -> (most calls inside construct at once, outputs per thread)."""
    Probe.inside = Probe.most_inside = 0
    outs = [[], []]
    start = threading.Barrier(2)

    def work(i):
        start.wait()
        for _ in range(calls):
            outs[i].append(net(inputs[i]).asnumpy())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Probe.most_inside, outs


def test_loaded_nets_take_pynative_calls_one_at_a_time(folder):
    rng = np.random.default_rng(1)
    inputs = [ms.Tensor(rng.standard_normal((2, 16)).astype(np.float32)) for _ in range(2)]
    net = msdiff.load(folder / "Probe")
    serial = [net(x).asnumpy() for x in inputs]
    most, outs = most_concurrent(net, inputs)
    assert most == 1
    for i in range(2):
        for out in outs[i]:
            np.testing.assert_array_equal(out, serial[i])
    bare = Probe(DeepConfig())  # built directly, not loaded: the control, threads do overlap in it
    assert most_concurrent(bare, inputs, calls=2)[0] == 2


def test_serialized_nets_keep_their_class_jit_and_copies(folder):
    net = msdiff.load(folder / "Deep")
    assert isinstance(net, Deep) and type(net).__name__ == "Deep" and type(net).__module__ == Deep.__module__
    assert type(msdiff.load(folder / "Deep")) is type(net)
    x = ms.Tensor(np.random.default_rng(2).standard_normal((2, 16)).astype(np.float32))
    eager = net(x).asnumpy()

    def forward(x):
        return net(x)

    np.testing.assert_allclose(ms.jit(forward)(x).asnumpy(), eager, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(copy.deepcopy(net)(x).asnumpy(), eager)
