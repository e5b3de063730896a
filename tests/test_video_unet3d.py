"""UNet3DConditionModel (ModelScope text-to-video) and its blocks against diffusers 0.35.2
(fixtures from tools/fixtures/video.py): fp32 rel L2 <= 1e-5 and max abs <= 1e-4, fp16 rel L2 <= 5e-3; PyNative
and jit."""
import mindspore as ms
import pytest
from _parity import assert_parity
from _video import BLOCKS, block_output, call, net, records

F = 3


def _t(d: dict, key: str, dtype):
    return ms.Tensor(d[key]).astype(dtype)


def _unet_args(d: dict) -> tuple:
    return _t(d, "in:sample", ms.float32), ms.Tensor(d["in:timestep"]), _t(d, "in:encoder_hidden_states", ms.float32)


@pytest.mark.parametrize("dtype,mode", [("float32", "pynative"), ("float16", "pynative"), ("float32", "jit")])
def test_unet3d_parity(dtype, mode):
    unet, d = net("unet3d", dtype), records("unet3d")
    args = _unet_args(d)
    out = call(unet, args, mode)
    assert_parity(out, d["out"], f"UNet3DConditionModel {mode}", dtype)


@pytest.mark.parametrize("path", list(BLOCKS["unet3d"]))
def test_unet3d_block_parity(path):
    """fp32 block by block on diffusers' recorded inputs (fp16 is covered by the whole net)."""
    assert_parity(block_output("unet3d", path), records("unet3d")[f"{path}:out"],
                  f"{BLOCKS['unet3d'][path][0]} ({path})")
