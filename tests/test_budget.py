"""msdiff.budget: an oversized request is refused up front with one line (estimate, available memory, what to try),
normal sizes run, MSDIFF_MEMORY_CHECK=0 turns it off (tiny SD pipeline fixture, PyNative, one step)."""
from pathlib import Path

import pytest

import msdiff
from msdiff import budget, recipes
from msdiff.nets import unet_2d_condition

SD = Path(__file__).parent / "fixtures" / "pipelines" / "sd"
# stabilityai/stable-diffusion-xl-base-1.0's unet config (architecture keys; built without weights below)
SDXL = dict(_class_name="UNet2DConditionModel", addition_embed_type="text_time", addition_time_embed_dim=256,
            attention_head_dim=[5, 10, 20], block_out_channels=[320, 640, 1280], cross_attention_dim=2048,
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], sample_size=128,
            projection_class_embeddings_input_dim=2816, transformer_layers_per_block=[1, 2, 10],
            use_linear_projection=True)


@pytest.fixture(scope="module")
def sd():
    return msdiff.load_pipeline(SD)


@pytest.fixture(autouse=True)
def _default_check():
    budget.set_memory_check(None)
    yield
    budget.set_memory_check(None)


def _run(c, **kw):
    return recipes.text_to_image(c, "a cat", num_inference_steps=1, height=64, width=64, mode="pynative",
                                 output_type="latent", **kw)


def test_normal_size_runs_and_a_planted_small_machine_refuses_before_the_first_step(sd, monkeypatch):
    assert _run(sd) is not None  # the real MemAvailable: a 64x64 image of a tiny net is not refused
    calls = []
    monkeypatch.setattr(budget, "available_bytes", lambda: 2 ** 10)  # a machine with 1 KiB available
    with pytest.raises(budget.MemoryBudgetError) as e:
        _run(sd, callback=lambda i, x: calls.append(i))
    msg = str(e.value)
    assert calls == [] and "\n" not in msg
    assert "0.0 GiB available" in msg and "MSDIFF_MEMORY_CHECK=0" in msg and "a smaller size" in msg
    from msdiff.recipes import latents

    monkeypatch.setattr(latents, "check_decode", lambda vae, shape: None)  # then the loop's own check refuses
    with pytest.raises(budget.MemoryBudgetError, match=r"^UNet2DConditionModel in pynative mode on latents "
                                                      r"\(1, 4, 8, 8\) \(x2 with guidance\) needs about"):
        _run(sd, callback=lambda i, x: calls.append(i))
    assert calls == []


def test_graph_mode_refusal_names_pynative_and_its_estimate(sd, monkeypatch):
    act = budget.step_activation(sd.unet, (1, 4, 8, 8), 2)[1]
    graph, pynative = (budget.estimate("unet", m, act) for m in ("graph", "pynative"))
    assert graph > pynative
    monkeypatch.setattr(budget, "available_bytes", lambda: (graph + pynative) // 2)
    with pytest.raises(budget.MemoryBudgetError, match=r"in graph mode .*: mode='pynative' \(about [0-9.]+ GiB, "
                                                      r"fits\); a smaller size"):
        budget.check_step(sd.unet, (1, 4, 8, 8), "graph", 2)
    budget.check_step(sd.unet, (1, 4, 8, 8), "pynative", 2)


def test_the_override_turns_the_check_off(sd, monkeypatch):
    monkeypatch.setattr(budget, "available_bytes", lambda: 2 ** 20)
    monkeypatch.setenv("MSDIFF_MEMORY_CHECK", "0")
    assert _run(sd) is not None
    monkeypatch.setenv("MSDIFF_MEMORY_CHECK", "1")
    budget.set_memory_check(False)
    assert _run(sd) is not None


def test_decode_is_checked_before_the_first_step(sd, monkeypatch):
    step = budget.estimate("unet", "pynative", budget.step_activation(sd.unet, (1, 4, 8, 8), 2)[1])
    decode = budget.estimate("decoder", "pynative", budget.decode_activation(sd.vae, (1, 4, 8, 8)))
    assert decode > step, "the fixture's decode must be the larger estimate for this test"
    monkeypatch.setattr(budget, "available_bytes", lambda: (step + decode) // 2)
    with pytest.raises(budget.MemoryBudgetError, match=r"decoding latents \(1, 4, 8, 8\) with AutoencoderKL "
                                                      r".*tiled_decode"):
        _run(sd)


def test_a_released_size_far_beyond_this_machine_is_refused_with_the_graph_and_pynative_estimates(monkeypatch):
    from mindspore.nn.utils import no_init_parameters

    monkeypatch.setattr(budget, "available_bytes", lambda: 16 * 2 ** 30)  # a 16 GiB machine (this one's varies)

    with no_init_parameters():  # structure only: no weight memory
        net = unet_2d_condition.UNet2DConditionModel(unet_2d_condition.config_from_diffusers(SDXL))
    have = budget.available_bytes()
    kind, act = budget.step_activation(net, (1, 4, 1024, 1024), 2)  # an 8192x8192 image with guidance
    assert kind == "unet" and act == 2 * 320 * 1024 * 1024 * 4
    assert budget.estimate(kind, "graph", act) > budget.estimate(kind, "pynative", act) > have
    with pytest.raises(budget.MemoryBudgetError, match=r"in graph mode .* mode='pynative' \(about [0-9.]+ GiB\)"):
        budget.check_step(net, (1, 4, 1024, 1024), "graph", 2)
    budget.check_step(net, (1, 4, 128, 128), "pynative", 2)  # SD-XL's native 1024x1024: fits the estimate


def test_guidance_copies_from_the_models_inputs():
    import numpy as np

    assert budget.guidance_copies((1, 4, 8, 8), (np.zeros((2, 77, 8)),)) == 2
    assert budget.guidance_copies((2, 4, 8, 8), (np.zeros((2, 77, 8)), np.zeros(3))) == 1
    assert budget.guidance_copies((1, 4, 8, 8), (np.zeros((3, 77, 8)),)) == 3
