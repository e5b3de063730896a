"""UNet3DConditionModel (ModelScope text-to-video) and its blocks against diffusers 0.35.2
(fixtures from tools/fixtures/video.py): fp32 rel L2 <= 1e-5 and max abs <= 1e-4, fp16 rel L2 <= 5e-3; PyNative
and jit."""
import mindspore as ms
import pytest
from _parity import assert_parity
from _video import block, call, net, records

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


def _block_out(unet, d: dict, path: str, dtype):
    cell = block(unet, path)
    x = _t(d, f"{path}:in:hidden_states", dtype)
    if path.endswith("temp_convs.0") or path == "transformer_in":
        return cell(x, F)
    temb = _t(d, f"{path}:in:temb", dtype)
    ctx = None
    if f"{path}:in:encoder_hidden_states" in d:
        ctx = _t(d, f"{path}:in:encoder_hidden_states", dtype)
    if path == "mid_block":
        return cell(x, temb, ctx, F)
    if path.startswith("down"):
        return cell(x, temb, ctx, F)[0]
    skips = tuple(_t(d, f"{path}:in:res_hidden_states_tuple:{i}", dtype) for i in range(len(cell.resnets)))
    return cell(x, skips, temb, ctx, F)


BLOCKS = {"transformer_in": "TransformerTemporalModel", "down_blocks.0.temp_convs.0": "TemporalConvLayer",
          "down_blocks.0": "CrossAttnDownBlock3D", "down_blocks.1": "DownBlock3D",
          "mid_block": "UNetMidBlock3DCrossAttn",
          "up_blocks.0": "UpBlock3D", "up_blocks.1": "CrossAttnUpBlock3D"}


@pytest.mark.parametrize("path", list(BLOCKS))
def test_unet3d_block_parity(path):
    """fp32 block by block on diffusers' recorded inputs (fp16 is covered by the whole net)."""
    unet, d = net("unet3d"), records("unet3d")
    assert_parity(_block_out(unet, d, path, ms.float32), d[f"{path}:out"], f"{BLOCKS[path]} ({path})")
