"""UNet3DConditionModel (ModelScope text-to-video) and its blocks against diffusers 0.35.2
(fixtures from tools/fixtures/video.py): fp32 rel L2 <= 1e-5 and max abs <= 1e-4 in PyNative (graph mode and fp16:
the support rows, tools/support/video.py)."""
import mindspore as ms
import pytest
from _parity import assert_parity
from _video import BLOCKS, block_output, net, records

F = 3


def _t(d: dict, key: str, dtype):
    return ms.Tensor(d[key]).astype(dtype)


def _unet_args(d: dict) -> tuple:
    return _t(d, "in:sample", ms.float32), ms.Tensor(d["in:timestep"]), _t(d, "in:encoder_hidden_states", ms.float32)


def test_unet3d_parity():
    unet, d = net("unet3d"), records("unet3d")
    assert_parity(unet(*_unet_args(d)), d["out"], "UNet3DConditionModel")


@pytest.mark.parametrize("path", list(BLOCKS["unet3d"]))
def test_unet3d_block_parity(path):
    """fp32 block by block on diffusers' recorded inputs (fp16 is covered by the whole net)."""
    assert_parity(block_output("unet3d", path), records("unet3d")[f"{path}:out"],
                  f"{BLOCKS['unet3d'][path][0]} ({path})")
