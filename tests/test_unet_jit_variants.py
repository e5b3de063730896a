"""UNet2DConditionModel parity under mindspore.jit (fp32): inpaint (9 input channels) and LCM (timestep_cond)
fixtures, with test_unet_parity.py's tolerances."""
import pytest
from test_unet_parity import check


@pytest.mark.parametrize("name", ["inpaint", "lcm"])
def test_fp32_parity_jit(name):
    check(name, "float32", "jit")
