"""AutoencoderKL structure and config handling.

Structure: the full-size SD VAE (sd-vae-ft-mse / SD 1.5 vae config) maps one-to-one onto the diffusers
state-dict keys/shapes recorded by tools/fixtures/sd_vae.py (meta-device build). The msdiff VAE is built
inside `mindspore.nn.utils.no_init_parameters()` so no parameter memory is allocated.
"""
import json
from pathlib import Path

import pytest
from mindspore.nn.utils import no_init_parameters
from test_unet_config import assert_one_to_one, msdiff_shapes

from msdiff.nets import autoencoder_kl as vae_mod

DOC = json.loads((Path(__file__).parent / "fixtures" / "sd_vae" / "structure" / "sd_vae.json").read_text())


def test_full_size_structure():
    config = vae_mod.config_from_diffusers(DOC["config"])
    with no_init_parameters():
        net = vae_mod.AutoencoderKL(config)
    assert_one_to_one(DOC["params"], msdiff_shapes(net), vae_mod.map_weights)


@pytest.mark.parametrize("key, value", [("act_fn", "relu"), ("down_block_types", ["DownEncoderBlock2DX"]),
                                        ("some_future_key", 3)])
def test_unsupported_config_is_named(key, value):
    with pytest.raises(ValueError, match=key if key != "down_block_types" else "DownEncoderBlock2DX"):
        vae_mod.config_from_diffusers(dict(DOC["config"], **{key: value}))


def test_factors_from_config():
    cfg = vae_mod.config_from_diffusers(dict(DOC["config"], scaling_factor=0.13025, shift_factor=0.0609,
                                             force_upcast=False, _diffusers_version="0.35.2"))
    assert (cfg.scaling_factor, cfg.shift_factor, cfg.force_upcast) == (0.13025, 0.0609, False)
