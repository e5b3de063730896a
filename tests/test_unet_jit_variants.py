"""UNet2DConditionModel parity under mindspore.jit: inpaint and LCM fixtures (fp32), SDXL-like in fp16
(relative L2 <= 5e-3 vs diffusers fp32), and odd latent sizes (upsample sizes taken from the skips)."""
import pytest
from test_unet_parity import check, check_odd_size


@pytest.mark.parametrize("name", ["inpaint", "lcm"])
def test_fp32_parity_jit(name):
    check(name, "float32", "jit")


def test_fp16_parity_jit():
    check("sdxl", "float16", "jit")


def test_odd_size_jit():
    check_odd_size("jit")
