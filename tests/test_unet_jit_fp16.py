"""UNet2DConditionModel under mindspore.jit: SDXL-like in fp16 (relative L2 <= 5e-3 vs diffusers fp32), and
odd latent sizes in fp32 (upsample sizes taken from the skips)."""
from test_unet_parity import check, check_odd_size


def test_fp16_parity_jit():
    check("sdxl", "float16", "jit")


def test_odd_size_jit():
    check_odd_size("jit")
