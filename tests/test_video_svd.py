"""Stable Video Diffusion's UNetSpatioTemporalConditionModel and AutoencoderKLTemporalDecoder, and their blocks,
against diffusers 0.35.2 (fixtures from tools/fixtures/video.py): fp32 rel L2 <= 1e-5 and max abs <= 1e-4, fp16
rel L2 <= 5e-3; PyNative and jit."""
import mindspore as ms
import pytest
from _parity import assert_parity
from _video import block, call, net, records

F = 3


def _t(d: dict, key: str, dtype=ms.float32):
    return ms.Tensor(d[key]).astype(dtype)


@pytest.mark.parametrize("dtype,mode", [("float32", "pynative"), ("float16", "pynative"), ("float32", "jit")])
def test_svd_unet_parity(dtype, mode):
    unet, d = net("svd_unet", dtype), records("svd_unet")
    args = tuple(_t(d, f"in:{k}") for k in ("sample", "timestep", "encoder_hidden_states", "added_time_ids"))
    assert_parity(call(unet, args, mode), d["out"], f"UNetSpatioTemporalConditionModel {mode}", dtype)


UNET_BLOCKS = {"down_blocks.0": "CrossAttnDownBlockSpatioTemporal", "down_blocks.1": "DownBlockSpatioTemporal",
               "mid_block": "UNetMidBlockSpatioTemporal", "up_blocks.0": "UpBlockSpatioTemporal",
               "up_blocks.1": "CrossAttnUpBlockSpatioTemporal", "down_blocks.0.resnets.0": "SpatioTemporalResBlock",
               "down_blocks.0.resnets.0.temporal_res_block": "TemporalResnetBlock",
               "down_blocks.0.attentions.0": "TransformerSpatioTemporalModel",
               "down_blocks.0.attentions.0.temporal_transformer_blocks.0": "TemporalBasicTransformerBlock"}


def _unet_block_out(unet, d: dict, path: str):
    cell = block(unet, path)
    x = _t(d, f"{path}:in:hidden_states")
    get = (lambda k: _t(d, f"{path}:in:{k}") if f"{path}:in:{k}" in d else None)
    temb, ctx, indicator = get("temb"), get("encoder_hidden_states"), get("image_only_indicator")
    if path.endswith("temporal_res_block"):
        return cell(x, temb)
    if path.endswith("temporal_transformer_blocks.0"):
        return cell(x, F, ctx)
    if path.endswith("resnets.0"):
        return cell(x, temb, indicator)
    if path.endswith("attentions.0"):
        return cell(x, ctx, indicator)
    if path == "mid_block":
        return cell(x, temb, ctx, indicator)
    if path.startswith("down"):
        return cell(x, temb, ctx, indicator)[0]
    skips = tuple(_t(d, f"{path}:in:res_hidden_states_tuple:{i}") for i in range(len(cell.resnets)))
    return cell(x, skips, temb, ctx, indicator)


@pytest.mark.parametrize("path", list(UNET_BLOCKS))
def test_svd_unet_block_parity(path):
    """fp32 block by block on diffusers' recorded inputs (fp16 is covered by the whole net)."""
    unet, d = net("svd_unet"), records("svd_unet")
    assert_parity(_unet_block_out(unet, d, path), d[f"{path}:out"], f"{UNET_BLOCKS[path]} ({path})")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_svd_vae_parity(dtype):
    """PyNative only: the SVD family's graph-mode case is the UNet's."""
    vae, d = net("svd_vae", dtype), records("svd_vae")

    assert_parity(vae.decode(_t(d, "in:latents"), F), d["out:decoded"], "TemporalDecoder", dtype)
    mean, _ = vae.encode(_t(d, "in:image"))
    assert_parity(mean, d["out:mean"], "AutoencoderKLTemporalDecoder.encode", dtype)


VAE_BLOCKS = {"decoder.mid_block": "MidBlockTemporalDecoder", "decoder.up_blocks.0": "UpBlockTemporalDecoder",
              "decoder.up_blocks.1": "UpBlockTemporalDecoder (last, no upsampler)"}


@pytest.mark.parametrize("path", list(VAE_BLOCKS))
def test_svd_vae_block_parity(path):
    vae, d = net("svd_vae"), records("svd_vae")
    out = block(vae, path)(_t(d, f"{path}:in:hidden_states"), _t(d, f"{path}:in:image_only_indicator"))
    assert_parity(out, d[f"{path}:out"], f"{VAE_BLOCKS[path]} ({path})")


def test_svd_vae_decode_needs_whole_videos():
    vae, d = net("svd_vae"), records("svd_vae")
    with pytest.raises(ValueError, match="not whole videos of 4 frames"):
        vae.decode(_t(d, "in:latents"), 4)
