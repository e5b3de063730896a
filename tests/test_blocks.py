"""Single-block parity with diffusers 0.35.2 for variants the tiny UNet/VAE fixtures do not reach:
scale_shift time embedding with output_scale_factor and groups_out, a forced bias-free shortcut without
temb, average-pool downsampling of odd sizes, upsampling to an explicit output_size, group-normed residual
attention with rescale_output_factor, and BasicTransformerBlock with only_cross_attention (GELU ff,
attention bias) and double_self_attention ("geglu-approximate", i.e. sigmoid-GELU).
fp32: max abs <= 1e-4, relative L2 <= 1e-5.
"""
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

from msdiff.blocks.attention import Attention, BasicTransformerBlock
from msdiff.blocks.resampling import Downsample2D, Upsample2D
from msdiff.blocks.resnet import ResnetBlock2D

DATA = dict(np.load(Path(__file__).parent / "fixtures" / "sd_unet" / "blocks.npz"))

CASES = {
    "resnet_scale_shift": (lambda: ResnetBlock2D(8, 12, 10, groups=4, groups_out=2, time_embedding_norm="scale_shift",
                                                 output_scale_factor=2.0), {}),
    "resnet_no_temb": (lambda: ResnetBlock2D(8, temb_channels=None, groups=4, use_in_shortcut=True,
                                             conv_shortcut_bias=False), {}),
    "downsample_pool": (lambda: Downsample2D(8, use_conv=False), {}),
    "upsample_size": (lambda: Upsample2D(8, use_conv=True, out_channels=4), {"output_size": (11, 13)}),
    "attention_spatial": (lambda: Attention(8, heads=2, dim_head=4, bias=True, norm_num_groups=4, eps=1e-6,
                                            residual_connection=True, rescale_output_factor=2.0), {}),
    "transformer_only_cross": (lambda: BasicTransformerBlock(8, 2, 4, cross_attention_dim=6, activation_fn="gelu",
                                                             attention_bias=True, only_cross_attention=True), {}),
    "transformer_double_self": (lambda: BasicTransformerBlock(8, 2, 4, activation_fn="geglu-approximate",
                                                              double_self_attention=True), {}),
}


def _load(cell, case: str):
    """Copy the diffusers state dict stored for `case` into cell, requiring the same names and shapes."""
    ref = {k.split("/", 1)[1]: v for k, v in DATA.items() if k.startswith(case + "/")}
    params = dict(cell.parameters_and_names())
    assert sorted(params) == sorted(ref), f"{case}: {sorted(set(params) ^ set(ref))}"
    for name, p in params.items():
        assert tuple(p.shape) == ref[name].shape, name
        p.set_data(ms.Tensor(ref[name]))
    return cell


@pytest.mark.parametrize("case", sorted(CASES))
def test_block_parity(case):
    build, kwargs = CASES[case]
    cell = _load(build(), case)
    inputs = [ms.Tensor(DATA[f"{case}:input{i}"]) for i in range(2) if f"{case}:input{i}" in DATA]
    if f"{case}:encoder_hidden_states" in DATA:
        inputs.append(ms.Tensor(DATA[f"{case}:encoder_hidden_states"]))
    got = cell(*inputs, **kwargs).asnumpy().astype(np.float64)
    ref = DATA[f"{case}:output"]
    assert got.shape == ref.shape
    max_abs = np.abs(got - ref).max()
    rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert max_abs <= 1e-4 and rel <= 1e-5, f"{case}: max abs {max_abs:.3g}, rel L2 {rel:.3g}"
