"""UNet2DConditionModel parity under mindspore.jit (fp32): the SD-XL-like fixture, and odd latent sizes (upsample
sizes taken from the skips). Same tolerances as test_unet_parity.py (max abs <= 1e-4, relative L2 <= 1e-5 vs
diffusers fp32).

The SD 1 / SD 2 / inpaint / LCM UNets compile inside the graph-mode recipe tests (tests/test_recipes_graph.py);
fp16 in graph mode and every UNet fixture in graph mode are rows of the support matrix (docs/SUPPORT.md).
"""
from test_unet_parity import check, check_odd_size


def test_fp32_parity_jit():
    check("sdxl", "float32", "jit")


def test_odd_size_jit():
    check_odd_size("jit")
