"""msdiff.diagnose finds a planted fp16 overflow and names the block."""
import numpy as np
import mindspore as ms
from mindspore import Tensor, nn

from msdiff.blocks.layers import Conv2d, GroupNorm
from msdiff.diagnose import first_nonfinite


class NaiveGroupNormFp16(nn.Cell):
    """Group norm with its statistics in fp16: squares of activations near 300 overflow."""

    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def construct(self, x):
        b, c, h, w = x.shape
        xg = x.reshape(b, self.groups, -1)
        mean = xg.mean(-1, keep_dims=True)
        meansq = (xg * xg).mean(-1, keep_dims=True)
        return ((xg - mean) / ms.ops.sqrt(meansq - mean * mean + 1e-5)).reshape(b, c, h, w)


class Net(nn.Cell):
    def __init__(self, naive: bool):
        super().__init__()
        self.conv_in = Conv2d(4, 8, 3, padding=1, dtype=ms.float16)
        self.blocks = nn.CellList([GroupNorm(2, 8, dtype=ms.float16),
                                   NaiveGroupNormFp16(2) if naive else GroupNorm(2, 8, dtype=ms.float16),
                                   Conv2d(8, 8, 1, dtype=ms.float16)])

    def construct(self, x):
        h = self.conv_in(x)
        h = self.blocks[0](h) * 300.0 + 300.0
        for i in range(1, 3):
            h = self.blocks[i](h)
        return h


def _input():
    return Tensor(np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float16))


def test_names_the_planted_overflow():
    report = first_nonfinite(Net(naive=True), _input())
    assert report is not None
    assert report.name == "blocks.1"
    assert report.cell_type == "NaiveGroupNormFp16"
    assert np.isfinite(report.input_absmax) and report.input_absmax > 250
    assert "blocks.1" in str(report)


def test_fp32_statistics_group_norm_stays_finite():
    assert first_nonfinite(Net(naive=False), _input()) is None


def test_format_plans_lists_each_net_of_a_pipeline():
    from msdiff.diagnose import format_plans
    from msdiff.nets._precision import apply_fp32_blocks

    planned = apply_fp32_blocks(Net(naive=False), ["blocks.1"])
    text = format_plans({"unet": planned, "vae": Net(naive=False), "tokenizer": object()})
    assert text.splitlines() == ["unet: Net: Float16, fp32 blocks: blocks.1 (GroupNorm)",
                                 "vae: Net: Float16, no fp32 blocks"]
    assert planned(_input()).dtype == ms.float16
