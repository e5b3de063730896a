"""Precision plans: named blocks of an fp16 net computed in fp32 (msdiff.load(..., fp32_blocks=...)).

A planted overflow (a tiny net whose one block's internal activation passes 65504) and the real mechanism
behind diffusers' force_upcast for the SD-XL VAE (decoder activations beyond the fp16 range that a GroupNorm
brings back): the fixture SD-XL VAE with one decoder conv scaled up, loaded from a folder.
"""
import functools
import shutil
from dataclasses import dataclass
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn
from safetensors.numpy import load_file, save_file

import msdiff
from msdiff import ops
from msdiff.blocks.layers import Conv2d, GroupNorm
from msdiff.diagnose import precision_report, twin
from msdiff.nets._precision import apply_fp32_blocks, format_plan

VAE = Path(__file__).parent / "fixtures" / "pipelines" / "sdxl" / "vae"
HOT_CONV = "decoder.up_blocks.3.resnets.0.conv1"


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@dataclass(frozen=True)
class TinyConfig:
    channels: int = 4
    gain: float = 3e4


class Hot(nn.Cell):
    """conv -> GroupNorm: the conv's output passes the fp16 range, the norm brings it back."""

    def __init__(self, c: TinyConfig, dtype):
        super().__init__()
        self.conv = Conv2d(c.channels, c.channels, 3, padding=1, dtype=dtype)
        self.norm = GroupNorm(2, c.channels, dtype=dtype)

    def construct(self, x, scale=1.0):
        return self.norm(self.conv(x)) * scale


class Tiny(nn.Cell):
    def __init__(self, config: TinyConfig, dtype=ms.float32):
        super().__init__()
        self.config, self.compute_dtype = config, dtype
        self.conv_in = Conv2d(3, config.channels, 3, padding=1, dtype=dtype)
        self.hot = Hot(config, dtype)
        self.conv_out = Conv2d(config.channels, 3, 3, padding=1, dtype=dtype)

    def construct(self, x):
        h = self.conv_in(x.astype(self.compute_dtype))
        return self.conv_out(ops.silu(self.hot(h, scale=2.0)))


@functools.lru_cache(maxsize=None)
def _tiny_weights():
    net = Tiny(TinyConfig())
    rng = np.random.default_rng(0)
    for name, p in net.parameters_and_names():
        value = rng.standard_normal(p.shape).astype(np.float32) * 0.3
        if name == "hot.conv.weight":
            value *= TinyConfig.gain
        p.set_data(Tensor(value))
    return net


def _tiny(dtype):
    return twin(_tiny_weights(), dtype)


def _x():
    return Tensor(np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32))


def test_planted_overflow_is_found_and_fixed_by_a_plan():
    ref = _tiny(ms.float32)(_x()).asnumpy()
    assert np.isfinite(ref).all()
    assert not np.isfinite(_tiny(ms.float16)(_x()).asnumpy()).all()
    report = precision_report(_tiny_weights(), _x())
    rows = {b.name: b for b in report.blocks}
    assert list(rows) == ["conv_in", "hot", "hot.conv", "hot.norm", "conv_out"]
    assert rows["hot.conv"].range_used > 1 and rows["hot.conv"].local_error == float("inf")
    assert rows["hot"].range_used < 1e-3 and rows["conv_in"].local_error < 5e-3
    assert report.output_error == float("inf")
    assert report.suggest_plan() == ("hot",)
    assert "hot.conv" in str(report)
    planned = precision_report(_tiny_weights(), _x(), fp32_blocks=("hot",))
    assert planned.output_error < 5e-3
    net = apply_fp32_blocks(_tiny(ms.float16), ["hot"])
    assert net.hot.conv.weight.dtype == ms.float32 and net.conv_in.weight.dtype == ms.float16
    out = net(_x())
    assert out.dtype == ms.float16 and rel(out.asnumpy(), ref) < 5e-3
    assert format_plan(net) == "Tiny: Float16, fp32 blocks: hot (Hot)"


def test_plan_keeps_names_compiles_and_refuses_unknown_blocks():
    net = _tiny(ms.float16)
    names = [n for n, _ in net.parameters_and_names()]
    apply_fp32_blocks(net, ("hot", "hot.conv"))
    assert net.fp32_blocks == ("hot",)
    assert [n for n, _ in net.parameters_and_names()] == names
    assert [p.name for p in net.get_parameters()] == names

    def f(x):
        return net(x)

    np.testing.assert_array_equal(ms.jit(f)(_x()).asnumpy(), net(_x()).asnumpy())
    with pytest.raises(ValueError, match=r"\['hot.nope'\] are not sub-cells of Tiny"):
        apply_fp32_blocks(net, ["hot.nope"])
    assert format_plan(_tiny(ms.float16)) == "Tiny: Float16, no fp32 blocks"


def _hot_vae(folder: Path) -> Path:
    """The fixture SD-XL-layout VAE with HOT_CONV scaled so its fp32 output passes 65504."""
    shutil.copytree(VAE, folder)
    weights = load_file(str(VAE / "diffusion_pytorch_model.safetensors"))
    weights[HOT_CONV + ".weight"] = weights[HOT_CONV + ".weight"] * np.float32(2e5)
    save_file(weights, str(folder / "diffusion_pytorch_model.safetensors"))
    return folder


def test_fp16_vae_overflow_fixed_by_a_plan_at_load(tmp_path):
    folder = _hot_vae(tmp_path / "vae")
    z = Tensor(np.random.default_rng(2).standard_normal((1, 4, 4, 4)).astype(np.float32))
    ref = msdiff.load(folder).decode(z).asnumpy()
    assert np.isfinite(ref).all()
    vae16 = msdiff.load(folder, dtype="float16")
    assert not np.isfinite(vae16.decode(z).asnumpy()).all()
    report = precision_report(vae16, z, depth=4)
    hot = {b.name: b for b in report.blocks}[HOT_CONV]
    assert hot.range_used > 1 and hot.local_error == float("inf")
    plan = report.suggest_plan()
    assert plan == ("decoder.up_blocks.3.resnets.0",)
    fixed = msdiff.load(folder, dtype="float16", fp32_blocks=plan)
    assert fixed.decoder.up_blocks[3].resnets[0].conv1.weight.dtype == ms.float32
    assert fixed.decoder.up_blocks[2].resnets[0].conv1.weight.dtype == ms.float16
    out = fixed.decode(z).asnumpy()
    assert np.isfinite(out).all() and rel(out, ref) < 5e-3
    assert format_plan(fixed) == "AutoencoderKL: Float16, fp32 blocks: decoder.up_blocks.3.resnets.0 (ResnetBlock2D)"


def test_fp16_activations_round_once():
    """silu / gelu / geglu of fp16 inputs are as accurate as the correctly rounded results (CPU: fp32 inside)."""
    x = (np.random.default_rng(3).standard_normal(4096) * 3).astype(np.float16)
    xf = x.astype(np.float64)
    exact = {"silu": xf / (1 + np.exp(-xf)), "quick_gelu": xf / (1 + np.exp(-1.702 * xf))}
    for name, want in exact.items():
        got = getattr(ops, name)(Tensor(x)).asnumpy()
        assert got.dtype == np.float16
        assert rel(got, want) <= 1.02 * rel(want.astype(np.float16), want), name
