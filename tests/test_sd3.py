"""Stable Diffusion 3: SD3Transformer2DModel (SD3 and SD3.5-style blocks) and the StableDiffusion3Pipeline recipe
against diffusers 0.35.2 on the committed tiny fixtures (tools/fixtures/sd3.py)."""
import gzip
import json
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from _parity import assert_parity
from mindspore import Tensor
from mindspore.nn.utils import no_init_parameters

import msdiff
from msdiff.io.registry import net_entry
from msdiff.nets.sd3_transformer import config_from_diffusers

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sd3"
IO = dict(np.load(FIXTURES / "net.npz"))


@pytest.fixture(scope="module")
def nets():
    return {tag: msdiff.load(FIXTURES / tag) for tag in ("net_sd3", "net_sd35")}


def _call(net, tag, x):
    return net(Tensor(IO[f"{tag}:{x}"]), Tensor(IO[f"{tag}:timestep"]), Tensor(IO[f"{tag}:encoder_hidden_states"]),
               Tensor(IO[f"{tag}:pooled_projections"]))


@pytest.mark.parametrize("tag", ["net_sd3", "net_sd35"])
def test_net_matches_diffusers(nets, tag):
    for x, o in (("sample", "out"), ("wide", "out_wide")):
        assert_parity(_call(nets[tag], tag, x), IO[f"{tag}:{o}"].astype(np.float64), f"SD3 {tag} {x}")


def test_released_structure():
    """Every parameter of stabilityai/stable-diffusion-3-medium-diffusers' transformer (config from public
    knowledge, built on torch's meta device) maps to one msdiff parameter of the same shape."""
    with gzip.open(FIXTURES / "structure.json.gz") as f:
        s = json.loads(f.read())["stabilityai/stable-diffusion-3-medium-diffusers/transformer"]
    entry = net_entry(s["config"]["_class_name"])
    with no_init_parameters():
        cell = entry.cls(entry.config_from_diffusers(s["config"]))
    ours = {k: list(p.shape) for k, p in cell.parameters_and_names()}
    theirs = {entry.map_weights(k): v for k, v in s["shapes"].items()}
    assert len(theirs) == len(s["shapes"]) == len(ours) and ours == theirs
    assert ours["pos_embed.pos_embed"] == [1, 192 * 192, 1536] and "transformer_blocks.23.attn.to_add_out.weight" \
        not in ours


@pytest.mark.parametrize("change,match", [
    (dict(qk_norm="layer_norm"), "qk_norm='layer_norm' is not supported"),
    (dict(dual_attention_layers=[0, 5]), r"dual_attention_layers \[5\] are not block indices"),
    (dict(caption_projection_dim=24), "caption_projection_dim 24 must equal"),
    (dict(pos_embed_max_size=None), "pos_embed_max_size=None is not supported"),
    (dict(use_magic=True), "unknown config key 'use_magic'"),
])
def test_bad_config(change, match):
    cfg = json.loads((FIXTURES / "net_sd3" / "config.json").read_text())
    with pytest.raises(ValueError, match=match):
        config_from_diffusers(dict(cfg, **change))


def test_bad_net_inputs(nets):
    net, tag = nets["net_sd3"], "net_sd3"
    x, t = Tensor(IO[f"{tag}:sample"]), Tensor(IO[f"{tag}:timestep"])
    ctx, pooled = Tensor(IO[f"{tag}:encoder_hidden_states"]), Tensor(IO[f"{tag}:pooled_projections"])
    with pytest.raises(ValueError, match=r"expected latents \[b, 16, h, w\]"):
        net(x[:, :4], t, ctx, pooled)
    with pytest.raises(ValueError, match="multiples of patch_size 2"):
        net(x[:, :, :7], t, ctx, pooled)
    with pytest.raises(ValueError, match="more than pos_embed_max_size 12"):
        net(ms.ops.zeros((2, 16, 26, 8), ms.float32), t, ctx, pooled)
    with pytest.raises(ValueError, match=r"expected encoder_hidden_states \[2, m, 48\]"):
        net(x, t, ctx[..., :40], pooled)
    with pytest.raises(ValueError, match=r"expected pooled_projections \[2, 40\]"):
        net(x, t, ctx, None)
