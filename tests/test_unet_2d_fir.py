"""FIR resampling blocks (FirUpsample2D, FirDownsample2D, ResnetBlock2D kernel="fir") against diffusers 0.35.2.

fp32: relative L2 <= 1e-5; fp16 (weights and input in fp16): relative L2 <= 5e-3 against diffusers'
fp32 output; both in PyNative and under mindspore.jit.
"""
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from tools.support.unet_2d import FIR_BLOCKS, fir_block

REF = dict(np.load(Path(__file__).resolve().parent / "fixtures" / "unet_2d" / "fir_blocks.npz"))
TOL = {ms.float32: 1e-5, ms.float16: 5e-3}


@pytest.mark.parametrize("name", sorted(FIR_BLOCKS))
@pytest.mark.parametrize("dtype", (ms.float32, ms.float16), ids=("fp32", "fp16"))
def test_fir_block_matches_diffusers(name, dtype):
    block = fir_block(REF, name, dtype)
    x = Tensor(REF["x"]).astype(dtype)
    temb = Tensor(REF["temb"]).astype(dtype)

    def f(x, temb):
        return block(x, temb) if name.startswith("resnet") else block(x)

    out = f(x, temb)
    assert out.dtype == dtype
    out = out.astype(ms.float32).asnumpy()
    ref = REF[name + ".out"]
    assert np.isfinite(out).all()
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) <= TOL[dtype]
