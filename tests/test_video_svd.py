"""Stable Video Diffusion's UNetSpatioTemporalConditionModel and AutoencoderKLTemporalDecoder, and their blocks,
against diffusers 0.35.2 (fixtures from tools/fixtures/video.py): fp32 rel L2 <= 1e-5 and max abs <= 1e-4 in
PyNative (graph mode and fp16: the support rows, tools/support/video.py)."""
import mindspore as ms
import pytest
from _parity import assert_parity
from _video import BLOCKS, block_output, net, records

F = 3


def _t(d: dict, key: str, dtype=ms.float32):
    return ms.Tensor(d[key]).astype(dtype)


def test_svd_unet_parity():
    unet, d = net("svd_unet"), records("svd_unet")
    args = tuple(_t(d, f"in:{k}") for k in ("sample", "timestep", "encoder_hidden_states", "added_time_ids"))
    assert_parity(unet(*args), d["out"], "UNetSpatioTemporalConditionModel")


@pytest.mark.parametrize("name,path", [(n, p) for n in ("svd_unet", "svd_vae") for p in BLOCKS[n]])
def test_svd_block_parity(name, path):
    """fp32 block by block on diffusers' recorded inputs (fp16 is covered by the whole nets)."""
    assert_parity(block_output(name, path), records(name)[f"{path}:out"], f"{BLOCKS[name][path][0]} ({path})")


def test_svd_vae_parity():
    vae, d = net("svd_vae"), records("svd_vae")
    assert_parity(vae.decode(_t(d, "in:latents"), F), d["out:decoded"], "TemporalDecoder")
    mean, _ = vae.encode(_t(d, "in:image"))
    assert_parity(mean, d["out:mean"], "AutoencoderKLTemporalDecoder.encode")


def test_svd_vae_decode_needs_whole_videos():
    vae, d = net("svd_vae"), records("svd_vae")
    with pytest.raises(ValueError, match="not whole videos of 4 frames"):
        vae.decode(_t(d, "in:latents"), 4)
