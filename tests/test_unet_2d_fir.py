"""FIR resampling blocks (FirUpsample2D, FirDownsample2D, ResnetBlock2D kernel="fir") against diffusers 0.35.2.

fp32: relative L2 <= 1e-5; fp16 (weights and input in fp16): relative L2 <= 5e-3 against diffusers'
fp32 output; both in PyNative and under mindspore.jit.
"""
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from msdiff.blocks.unet_2d_model_blocks import (FirDownResnetBlock2D, FirDownsample2D, FirUpResnetBlock2D,
                                                FirUpsample2D)

REF = np.load(Path(__file__).resolve().parent / "fixtures" / "unet_2d" / "fir_blocks.npz")
BLOCKS = {
    "fir_up": lambda dt: FirUpsample2D(8, use_conv=False, dtype=dt),
    "fir_up_conv": lambda dt: FirUpsample2D(8, 6, use_conv=True, dtype=dt),
    "fir_down": lambda dt: FirDownsample2D(8, use_conv=False, dtype=dt),
    "fir_down_conv": lambda dt: FirDownsample2D(8, 6, use_conv=True, dtype=dt),
    "resnet_fir_up": lambda dt: FirUpResnetBlock2D(8, 6, 16, groups=2, dtype=dt),
    "resnet_fir_down": lambda dt: FirDownResnetBlock2D(8, 6, 16, groups=2, dtype=dt),
}
TOL = {ms.float32: 1e-5, ms.float16: 5e-3}


def _block(name: str, dtype):
    block = BLOCKS[name](dtype)
    params = dict(block.parameters_and_names())
    expected = sorted(k[len(name) + 1:] for k in REF.files if k.startswith(name + ".") and not k.endswith(".out"))
    assert sorted(params) == expected
    for key, p in params.items():
        p.set_data(Tensor(REF[f"{name}.{key}"]).astype(dtype))
    block.set_train(False)
    return block


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("dtype", (ms.float32, ms.float16), ids=("fp32", "fp16"))
@pytest.mark.parametrize("mode", ("pynative", "jit"))
def test_fir_block_matches_diffusers(name, dtype, mode):
    block = _block(name, dtype)
    x = Tensor(REF["x"]).astype(dtype)
    temb = Tensor(REF["temb"]).astype(dtype)

    def f(x, temb):
        return block(x, temb) if name.startswith("resnet") else block(x)

    out = (ms.jit(f) if mode == "jit" else f)(x, temb)
    assert out.dtype == dtype
    out = out.astype(ms.float32).asnumpy()
    ref = REF[name + ".out"]
    assert np.isfinite(out).all()
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) <= TOL[dtype]
