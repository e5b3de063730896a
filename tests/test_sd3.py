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


# ---- StableDiffusion3Pipeline --------------------------------------------------------------------------------------
import dataclasses  # noqa: E402

import PIL.Image  # noqa: E402
from _cases import mode_cases  # noqa: E402

from msdiff.cli import main  # noqa: E402
from msdiff.recipes import sd3 as sd3_module  # noqa: E402

CASES = json.loads((FIXTURES / "cases.json").read_text())
ARRAYS = dict(np.load(FIXTURES / "cases.npz"))


@pytest.fixture(scope="module")
def pipe():
    return msdiff.load_pipeline(FIXTURES / "pipe")


def _components(pipe, case):
    if case.get("no_t5"):  # diffusers' text_encoder_3=None: zeros in place of the T5 tokens
        return dataclasses.replace(pipe, extra=dict(pipe.extra, text_encoder_3=None, tokenizer_3=None))
    return pipe


@pytest.mark.parametrize("name,mode", mode_cases(("cfg", "prompts", "no_t5", "dynamic"), graph_name="prompts"))
def test_pipeline_matches_diffusers(pipe, name, mode):
    case = CASES[name]
    images = sd3_module.sd3(_components(pipe, case), **case["args"], latents=ARRAYS[f"{name}:latents"],
                            sampler=case.get("scheduler"), mode=mode, output_type="np")
    ref = ARRAYS[f"{name}:expected"]
    assert images.shape == ref.shape
    err = float(np.abs(np.asarray(images, np.float64) - ref).max())
    assert err <= 1e-4, f"{name} {mode}: max abs {err:.3g}"


def test_encode_prompt_layout(pipe):
    """CLIP-L | CLIP-G penultimate states zero-padded to the T5 width, then T5's tokens; pooled = both projections."""
    emb, pooled, neg, neg_pooled = sd3_module.encode_prompt_sd3(pipe, "a cat", max_sequence_length=8, guidance=False)
    assert emb.shape == (1, 77 + 8, 48) and pooled.shape == (1, 40) and neg is None and neg_pooled is None
    assert float(emb[:, :77, 40:].abs().max()) == 0.0 and float(emb[:, :77, :40].abs().max()) > 0


@pytest.mark.parametrize("change,error,match", [
    (dict(height=18), ValueError, "have to be divisible by 4 but are 18 and 16"),
    (dict(max_sequence_length=600), ValueError, "cannot be greater than 512"),
    (dict(negative_prompt=["a", "b"]), ValueError, "negative_prompt has 2 entries but prompt has 1"),
    (dict(prompt_2=3), TypeError, "prompt_2 must be a str or a list of str"),
    (dict(output_type="pt"), ValueError, "output_type must be"),
    (dict(generator=1), TypeError, "generator"),
])
def test_bad_input(pipe, change, error, match):
    kw = dict(prompt="a cat", num_inference_steps=1, height=16, width=16, max_sequence_length=8, mode="pynative")
    with pytest.raises(error, match=match):
        sd3_module.sd3(pipe, **dict(kw, **change))


def test_missing_component(pipe):
    with pytest.raises(ValueError, match="no 'text_encoder_2'"):
        sd3_module.sd3(dataclasses.replace(pipe, text_encoder_2=None), "a cat", num_inference_steps=1, height=16,
                       width=16, mode="pynative")


def test_cli_dispatch(monkeypatch, tmp_path):
    """`msdiff generate` on the fixture folder runs the sd3 recipe (StableDiffusion3Pipeline in model_index.json)."""
    real, calls = sd3_module.sd3, []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(sd3_module, "sd3", spy)
    out = tmp_path / "out.png"
    assert main(["generate", "--model", str(FIXTURES / "pipe"), "--prompt", "a red cube", "--steps", "2", "--size",
                 "24x16", "--guidance", "3", "--seed", "3", "--mode", "pynative", "--out", str(out)]) == 0
    assert len(calls) == 1
    assert {k: calls[0][k] for k in ("prompt", "num_inference_steps", "guidance_scale", "width", "height")} == \
        dict(prompt="a red cube", num_inference_steps=2, guidance_scale=3.0, width=24, height=16)
    assert PIL.Image.open(out).size == (24, 16)
