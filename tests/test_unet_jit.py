"""UNet2DConditionModel parity under mindspore.jit (fp32): the SD1-, SD2- and SDXL-like fixtures.

Same tolerances as test_unet_parity.py (max abs <= 1e-4, relative L2 <= 1e-5 vs diffusers fp32).
"""
import pytest
from test_unet_parity import check


@pytest.mark.parametrize("name", ["sd1", "sd2", "sdxl"])
def test_fp32_parity_jit(name):
    check(name, "float32", "jit")
