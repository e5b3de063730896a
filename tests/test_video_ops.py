"""ops.conv3d / ops.temporal_conv and the Conv3d block against torch.nn.functional.conv3d (diffusers 0.35.2's
reference env; fixtures from tools/fixtures/video.py): fp32 rel L2 <= 1e-5 and max abs <= 1e-4, fp16 rel L2 <= 5e-3."""
import mindspore as ms
import numpy as np
import pytest
from _parity import assert_parity
from _video import FIX

from msdiff import ops
from msdiff.blocks.temporal import Conv3d

PADDING = {"temporal": (1, 0, 0), "pointwise": 0, "general": (1, 1, 1)}
D = dict(np.load(FIX / "conv3d.npz"))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("case", list(PADDING))
def test_conv3d_parity(case, dtype):
    x, w, b = (ms.Tensor(D[f"{case}:{k}"]).astype(dtype) for k in "xwb")
    out = ops.conv3d(x, w, b, padding=PADDING[case])
    assert out.dtype == x.dtype
    assert_parity(out, D[f"{case}:out"], f"conv3d {case}", dtype)


def _temporal(x, w, b):
    return ops.temporal_conv(x, w, b, padding=1)


def test_temporal_conv_and_block():
    """PyNative (graph mode: the nn.Conv3d support row and every video net's)."""
    x, w, b = (ms.Tensor(D[f"temporal:{k}"]) for k in "xwb")
    assert_parity(_temporal(x, w, b), D["temporal:out"], "temporal_conv")
    conv = Conv3d(6, 8, (3, 1, 1), padding=(1, 0, 0))
    conv.weight.set_data(w)
    conv.bias.set_data(b)
    assert_parity(conv(x), D["temporal:out"], "Conv3d block")


def test_temporal_conv_errors():
    x = ms.Tensor(np.zeros((1, 6, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="temporal_conv"):
        ops.temporal_conv(x, ms.Tensor(np.zeros((8, 6, 3, 3, 1), np.float32)))
    with pytest.raises(ValueError, match="temporal kernel 3 longer"):
        ops.temporal_conv(x, ms.Tensor(np.zeros((8, 6, 3, 1, 1), np.float32)))
