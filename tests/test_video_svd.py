"""Stable Video Diffusion's UNetSpatioTemporalConditionModel and AutoencoderKLTemporalDecoder, and their blocks,
against diffusers 0.35.2 (fixtures from tools/fixtures/video.py): fp32 rel L2 <= 1e-5 and max abs <= 1e-4, fp16
rel L2 <= 5e-3; PyNative and jit."""
import mindspore as ms
import pytest
from _parity import assert_parity
from _video import BLOCKS, block_output, call, net, records

F = 3


def _t(d: dict, key: str, dtype=ms.float32):
    return ms.Tensor(d[key]).astype(dtype)


@pytest.mark.parametrize("dtype,mode", [("float32", "pynative"), ("float16", "pynative"), ("float32", "jit")])
def test_svd_unet_parity(dtype, mode):
    unet, d = net("svd_unet", dtype), records("svd_unet")
    args = tuple(_t(d, f"in:{k}") for k in ("sample", "timestep", "encoder_hidden_states", "added_time_ids"))
    assert_parity(call(unet, args, mode), d["out"], f"UNetSpatioTemporalConditionModel {mode}", dtype)


@pytest.mark.parametrize("name,path", [(n, p) for n in ("svd_unet", "svd_vae") for p in BLOCKS[n]])
def test_svd_block_parity(name, path):
    """fp32 block by block on diffusers' recorded inputs (fp16 is covered by the whole nets)."""
    assert_parity(block_output(name, path), records(name)[f"{path}:out"], f"{BLOCKS[name][path][0]} ({path})")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_svd_vae_parity(dtype):
    """PyNative only: the SVD family's graph-mode case is the UNet's."""
    vae, d = net("svd_vae", dtype), records("svd_vae")

    assert_parity(vae.decode(_t(d, "in:latents"), F), d["out:decoded"], "TemporalDecoder", dtype)
    mean, _ = vae.encode(_t(d, "in:image"))
    assert_parity(mean, d["out:mean"], "AutoencoderKLTemporalDecoder.encode", dtype)


def test_svd_vae_decode_needs_whole_videos():
    vae, d = net("svd_vae"), records("svd_vae")
    with pytest.raises(ValueError, match="not whole videos of 4 frames"):
        vae.decode(_t(d, "in:latents"), 4)
