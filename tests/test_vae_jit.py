"""AutoencoderKL encode / sample_latent / decode under mindspore.jit, fp32 and fp16 (tolerances as in
test_vae_parity.py)."""
import pytest
from test_vae_parity import check_encode_sample_decode


@pytest.mark.parametrize("dtype", ["float32"])  # fp16 in graph mode: the support matrix
def test_encode_sample_decode_jit(dtype):
    check_encode_sample_decode("jit", dtype)
