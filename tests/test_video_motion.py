"""AnimateDiff: MotionAdapter and UNetMotionModel (assembled like diffusers' UNetMotionModel.from_unet2d from an SD
UNet2DConditionModel and a MotionAdapter) against diffusers 0.35.2 (fixtures from tools/fixtures/video.py):
fp32 rel L2 <= 1e-5 and max abs <= 1e-4; PyNative and (the one video-net graph case) jit."""
import json

import mindspore as ms
import pytest
from _parity import assert_parity
from _video import BLOCKS, FIX, block_output, call, net, records

from msdiff.nets import unet_motion as um

F = 3


def _config(name: str) -> dict:
    return json.loads((FIX / name / "config.json").read_text())


def _motion(dtype: str = "float32"):
    return net("motion", dtype)


def test_from_unet2d_config_equals_diffusers():
    assert um.config_from_unet2d(_config("sd_unet"), _config("motion_adapter")) == \
        um.config_from_diffusers(_config("motion"))


def test_motion_adapter_loads_strictly():
    adapter = net("motion_adapter")
    names = {n for n, _ in adapter.parameters_and_names()}
    keys = json.loads((FIX / "motion_adapter" / "keys.json").read_text())["shapes"]
    assert names == {um.map_weights(k) for k in keys} - {None}


@pytest.mark.parametrize("mode", ["pynative", "jit"])
def test_unet_motion_parity(mode):
    """The jit case is the one graph-mode case of the video nets' tests (the support rows run every video net and
    block in graph mode and fp16)."""
    d = records("motion")
    args = (ms.Tensor(d["in:sample"]), ms.Tensor(d["in:timestep"]), ms.Tensor(d["in:encoder_hidden_states"]))
    assert_parity(call(_motion(), args, mode), d["out"], f"UNetMotionModel {mode}")


def test_unet_motion_repeats_a_per_video_context():
    d = records("motion")
    ctx = ms.Tensor(d["in:encoder_hidden_states"][::F])
    assert_parity(_motion()(ms.Tensor(d["in:sample"]), ms.Tensor(d["in:timestep"]), ctx), d["out"],
                  "UNetMotionModel, context [b, n, d]")


@pytest.mark.parametrize("path", list(BLOCKS["motion"]))
def test_motion_block_parity(path):
    """fp32 block by block on diffusers' recorded inputs (fp16 is covered by the whole net)."""
    assert_parity(block_output("motion", path), records("motion")[f"{path}:out"],
                  f"{BLOCKS['motion'][path][0]} ({path})")


def test_unet_motion_refuses_too_many_frames():
    d = records("motion")
    sample = ms.Tensor(d["in:sample"]).tile((1, 1, 3, 1, 1))
    with pytest.raises(ValueError, match="9 frames exceed num_positional_embeddings 8"):
        _motion()(sample, ms.Tensor(d["in:timestep"]), ms.Tensor(d["in:encoder_hidden_states"][::F]))
