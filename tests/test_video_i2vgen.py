"""I2VGenXLUNet against diffusers 0.35.2 (fixtures from tools/fixtures/video.py): fp32 rel L2 <= 1e-5 and max abs
<= 1e-4 in PyNative (graph mode and fp16: the support rows, tools/support/video.py); its image-conditioning
pieces at block level."""
import mindspore as ms
import numpy as np
import pytest
from _parity import assert_parity
from _video import net, records

from msdiff import ops

ARGS = ("sample", "timestep", "fps", "image_latents", "image_embeddings", "encoder_hidden_states")


def test_i2vgen_parity():
    unet, d = net("i2vgen"), records("i2vgen")
    out = unet(*(ms.Tensor(d[f"in:{k}"]) for k in ARGS))
    assert_parity(out, d["out"], "I2VGenXLUNet")


def test_i2vgen_image_blocks():
    unet, d = net("i2vgen"), records("i2vgen")
    enc = "image_latents_temporal_encoder"
    assert_parity(unet.image_latents_temporal_encoder(ms.Tensor(d[f"{enc}:in:hidden_states"])), d[f"{enc}:out"],
                  "I2VGenXLTransformerTemporalEncoder")
    ctx = "image_latents_context_embedding"
    x = unet._image_context(ms.Tensor(d[f"{ctx}:in:input"]))
    ref = d[f"{ctx}:out"]
    assert_parity(x, ref.transpose(0, 2, 3, 1).reshape(ref.shape[0], -1, ref.shape[1]),
                  "image_latents_context_embedding")
    assert_parity(unet.transformer_in(ms.Tensor(d["transformer_in:in:hidden_states"]), 3), d["transformer_in:out"],
                  "transformer_in")


@pytest.mark.parametrize("size,out", [((8, 8), 32), ((64, 48), 32), ((7, 5), (3, 2))])
def test_adaptive_avg_pool2d_bins(size, out):
    """Against the bin definition of torch's adaptive_avg_pool2d, computed here in float64."""
    x = np.random.default_rng(0).standard_normal((1, 2) + size)
    oh, ow = (out, out) if isinstance(out, int) else out
    ref = np.zeros((1, 2, oh, ow))
    for i in range(oh):
        for j in range(ow):
            h0, h1 = i * size[0] // oh, -(-(i + 1) * size[0] // oh)
            w0, w1 = j * size[1] // ow, -(-(j + 1) * size[1] // ow)
            ref[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    assert_parity(ops.adaptive_avg_pool2d(ms.Tensor(x.astype(np.float32)), out), ref, "adaptive_avg_pool2d")
