"""NCSN++-like UNet2DModel (SkipDown/AttnSkipDown/AttnSkipUp/SkipUp blocks, FIR resnets, Fourier time) and each
skip block alone against diffusers 0.35.2 (tests/fixtures/unet_2d): fp32 rel L2 <= 1e-5 and max abs <= 1e-4,
fp16 rel L2 <= 5e-3 against diffusers' fp32 output, PyNative and mindspore.jit.
"""
import json
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

import msdiff
from msdiff.blocks.skip_blocks import AttnSkipDownBlock2D, AttnSkipUpBlock2D, SkipDownBlock2D, SkipUpBlock2D
from msdiff.nets.unet_2d import config_from_diffusers

FOLDER = Path(__file__).resolve().parent / "fixtures" / "unet_2d" / "ncsnpp"
IO = np.load(FOLDER / "io.npz")
NETS = {}


def _net(dtype):
    if dtype not in NETS:
        NETS[dtype] = msdiff.load(FOLDER, dtype="float16" if dtype == ms.float16 else "float32")
    return NETS[dtype]


def _rel_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_config_reads_skip_blocks():
    cfg = config_from_diffusers(json.loads((FOLDER / "config.json").read_text()))
    assert cfg.down_block_types == ("SkipDownBlock2D", "AttnSkipDownBlock2D")
    assert cfg.up_block_types == ("AttnSkipUpBlock2D", "SkipUpBlock2D")
    assert cfg.norm_num_groups is None and cfg.time_embedding_type == "fourier"


def test_block_types_and_parameter_tree():
    net = _net(ms.float32)
    assert isinstance(net.down_blocks[0], SkipDownBlock2D)
    assert isinstance(net.down_blocks[1], AttnSkipDownBlock2D)
    assert isinstance(net.up_blocks[0], AttnSkipUpBlock2D)
    assert isinstance(net.up_blocks[1], SkipUpBlock2D)
    names = {n for n, _ in net.parameters_and_names()}
    assert {"down_blocks.0.skip_conv.weight", "down_blocks.0.resnet_down.conv_shortcut.weight",
            "up_blocks.0.skip_norm.weight", "up_blocks.0.skip_conv.weight", "up_blocks.0.attentions.0.group_norm.weight",
            "up_blocks.0.resnet_up.conv1.weight"} <= names


@pytest.mark.parametrize("mode,dtype", [("pynative", ms.float32), ("pynative", ms.float16), ("jit", ms.float32)],
                         ids=("pynative-fp32", "pynative-fp16", "jit-fp32"))
def test_ncsnpp_matches_diffusers(dtype, mode):
    net = _net(dtype)

    def f(x, t):
        return net(x, t)

    out = (ms.jit(f) if mode == "jit" else f)(Tensor(IO["sample"]).astype(dtype), Tensor(IO["timestep"]))
    assert out.dtype == dtype
    out = out.astype(ms.float32).asnumpy()
    assert np.isfinite(out).all()
    if dtype == ms.float32:
        assert _rel_l2(out, IO["out"]) <= 1e-5
        assert np.abs(out - IO["out"]).max() <= 1e-4
    else:
        assert _rel_l2(out, IO["out"]) <= 5e-3


def test_skip_blocks_need_rgb():
    cfg = json.loads((FOLDER / "config.json").read_text())
    with pytest.raises(ValueError, match="in_channels"):
        config_from_diffusers({**cfg, "in_channels": 1, "out_channels": 1})


# skip_blocks.npz: the plain skip blocks; attn_skip_blocks.npz: the attention ones (32 channels, fp16-stored weights).
REFS = {"plain": np.load(FOLDER.parent / "skip_blocks.npz"), "attn": np.load(FOLDER.parent / "attn_skip_blocks.npz")}
BLOCKS = {"down": lambda dt: SkipDownBlock2D(8, 8, 16, dtype=dt), "up": lambda dt: SkipUpBlock2D(8, 8, 8, 16, dtype=dt),
          "up_last": lambda dt: SkipUpBlock2D(8, 8, 8, 16, add_upsample=False, dtype=dt),
          "attn_down": lambda dt: AttnSkipDownBlock2D(4, 32, 16, attention_head_dim=8, dtype=dt),
          "attn_up": lambda dt: AttnSkipUpBlock2D(8, 4, 32, 16, attention_head_dim=8, dtype=dt)}


def _ref(name):
    return REFS["attn" if name.startswith("attn") else "plain"]


def _block(name, dtype):
    block, ref = BLOCKS[name](dtype), _ref(name)
    params = dict(block.parameters_and_names())
    stored = sorted(k[len(name) + 1:] for k in ref.files if k.startswith(name + ".") and ".out" not in k)
    assert sorted(params) == stored
    for key, p in params.items():
        p.set_data(Tensor(ref[f"{name}.{key}"]).astype(dtype))
    block.set_train(False)
    return block


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("dtype", (ms.float32, ms.float16), ids=("fp32", "fp16"))
def test_skip_block_matches_diffusers(name, dtype):
    block, ref = _block(name, dtype), _ref(name)
    x, temb, res0, skip, half = (Tensor(ref[k]).astype(dtype)
                                 for k in ("x", "temb", "res0", "skip_sample", "skip_half"))

    def f(x, temb, res0, skip, half):
        if name.endswith("down"):
            h, skips, s = block(x, temb, skip)
            return (h,) + skips + (s,)
        out = block(x, (res0,), temb, half)
        return out + block(x, (res0,), temb, None) if name.endswith("up") else out

    outs = f(x, temb, res0, skip, half)
    n = len([k for k in ref.files if k.startswith(name + ".out")])
    assert len(outs) == n
    for k, out in enumerate(outs):
        assert out.dtype == dtype
        out, expected = out.astype(ms.float32).asnumpy(), ref[f"{name}.out{k}"]
        assert np.isfinite(out).all()
        assert _rel_l2(out, expected) <= (1e-5 if dtype == ms.float32 else 5e-3), (name, k)
