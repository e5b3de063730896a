"""AnimateDiff: MotionAdapter and UNetMotionModel (assembled like diffusers' UNetMotionModel.from_unet2d from an SD
UNet2DConditionModel and a MotionAdapter) against diffusers 0.35.2 (fixtures from tools/fixtures/video.py):
fp32 rel L2 <= 1e-5 and max abs <= 1e-4, fp16 rel L2 <= 5e-3; PyNative and jit."""
import json
from functools import lru_cache

import mindspore as ms
import pytest
from _parity import assert_parity
from _video import FIX, block, call, folder, net, records
from mindspore.nn.utils import no_init_parameters

from msdiff.io.weights import load_weights
from msdiff.nets import unet_motion as um

F = 3


def _config(name: str) -> dict:
    return json.loads((FIX / name / "config.json").read_text())


@lru_cache(maxsize=None)
def _motion(dtype: str = "float32"):
    config = um.config_from_unet2d(_config("sd_unet"), _config("motion_adapter"))
    with no_init_parameters():
        unet = um.UNetMotionModel(config, dtype=ms.float16 if dtype == "float16" else ms.float32)
    files = [folder(n) / "diffusion_pytorch_model.safetensors" for n in ("sd_unet", "motion_adapter")]
    load_weights(unet, files, um.map_weights)
    unet.set_train(False)
    return unet


def test_from_unet2d_config_equals_diffusers():
    assert um.config_from_unet2d(_config("sd_unet"), _config("motion_adapter")) == \
        um.config_from_diffusers(_config("motion"))


def test_motion_adapter_loads_strictly():
    adapter = net("motion_adapter")
    names = {n for n, _ in adapter.parameters_and_names()}
    keys = json.loads((FIX / "motion_adapter" / "keys.json").read_text())["shapes"]
    assert names == {um.map_weights(k) for k in keys} - {None}


@pytest.mark.parametrize("dtype,mode", [("float32", "pynative"), ("float16", "pynative"), ("float32", "jit")])
def test_unet_motion_parity(dtype, mode):
    d = records("motion")
    args = (ms.Tensor(d["in:sample"]), ms.Tensor(d["in:timestep"]), ms.Tensor(d["in:encoder_hidden_states"]))
    assert_parity(call(_motion(dtype), args, mode), d["out"], f"UNetMotionModel {mode}", dtype)


def test_unet_motion_repeats_a_per_video_context():
    d = records("motion")
    ctx = ms.Tensor(d["in:encoder_hidden_states"][::F])
    assert_parity(_motion()(ms.Tensor(d["in:sample"]), ms.Tensor(d["in:timestep"]), ctx), d["out"],
                  "UNetMotionModel, context [b, n, d]")


BLOCKS = {"down_blocks.0": "CrossAttnDownBlockMotion", "down_blocks.1": "DownBlockMotion",
          "mid_block": "UNetMidBlockCrossAttnMotion", "up_blocks.0": "UpBlockMotion",
          "up_blocks.1": "CrossAttnUpBlockMotion", "down_blocks.0.motion_modules.0": "AnimateDiffTransformer3D"}


@pytest.mark.parametrize("path", list(BLOCKS))
def test_motion_block_parity(path):
    """fp32 block by block on diffusers' recorded inputs (fp16 is covered by the whole net)."""
    d, cell = records("motion"), block(_motion(), path)
    get = (lambda k: ms.Tensor(d[f"{path}:in:{k}"]) if f"{path}:in:{k}" in d else None)
    x, temb, ctx = get("hidden_states"), get("temb"), get("encoder_hidden_states")
    if path.endswith("motion_modules.0"):
        out = cell(x, F)
    elif path == "mid_block" or path.startswith("down"):
        out = cell(x, temb, ctx, F)
        out = out if path == "mid_block" else out[0]
    else:
        skips = tuple(get(f"res_hidden_states_tuple:{i}") for i in range(len(cell.resnets)))
        out = cell(x, skips, temb, ctx, F)
    assert_parity(out, d[f"{path}:out"], f"{BLOCKS[path]} ({path})")


def test_unet_motion_refuses_too_many_frames():
    d = records("motion")
    sample = ms.Tensor(d["in:sample"]).tile((1, 1, 3, 1, 1))
    with pytest.raises(ValueError, match="9 frames exceed num_positional_embeddings 8"):
        _motion()(sample, ms.Tensor(d["in:timestep"]), ms.Tensor(d["in:encoder_hidden_states"][::F]))
