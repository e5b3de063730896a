"""msdiff.recipes.train: dataset checks, a tiny training run, diffusers-layout checkpoints, exact resume."""
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

import msdiff
from msdiff.recipes.train import train_unconditional

TINY = dict(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(4, 8),
            norm_num_groups=2, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=4, num_class_embeds=3)


def _data(n=6):
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (n, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, n)


def _train(tmp_path, name, steps, **kw):
    x, y = _data()
    return train_unconditional(x, y, out_dir=tmp_path / name, unet_config=TINY, num_steps=steps, batch_size=2,
                               warmup_steps=2, jit=False, progress=False, **kw)


@pytest.mark.parametrize("images, labels, match", [
    (np.zeros((0, 1, 8, 8), np.float32), np.zeros((0,), np.int64), "empty"),
    (np.zeros((4, 8, 8), np.float32), np.zeros((4,), np.int64), r"\[N, C, H, W\]"),
    (np.zeros((4, 1, 8, 8), np.float32), np.zeros((3,), np.int64), "labels must have shape"),
    (np.zeros((4, 1, 8, 8), np.float32), np.array([0, 1, 2, 3]), r"labels must lie in \[0, 3\)"),
    (np.zeros((4, 1, 8, 8), np.float32), np.zeros((4,), np.float32), "integers"),
    (np.full((4, 1, 8, 8), 3.0, np.float32), np.zeros((4,), np.int64), r"\[-1, 1\]"),
    (np.zeros((4, 1, 8, 8), np.float32), None, "pass labels"),
])
def test_bad_datasets_raise_clear_errors(tmp_path, images, labels, match):
    with pytest.raises(ValueError, match=match):
        train_unconditional(images, labels, out_dir=tmp_path, unet_config=TINY, num_steps=1)


def test_checkpoint_layout_loads_and_resume_is_exact(tmp_path):
    _train(tmp_path, "straight", 3)
    _train(tmp_path, "resumed", 2)
    state = json.loads((tmp_path / "resumed" / "training_state.json").read_text())
    assert state["step"] == 2
    _train(tmp_path, "resumed", 3)

    folder = tmp_path / "resumed"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "DDPMPipeline" and index["unet"] == ["diffusers", "UNet2DModel"]
    config = json.loads((folder / "unet" / "config.json").read_text())
    assert config["_class_name"] == "UNet2DModel" and config["_diffusers_version"] == "0.35.2"
    sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert sched["_class_name"] == "DDPMScheduler" and sched["prediction_type"] == "epsilon"

    a = load_file(str(tmp_path / "straight" / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    assert sorted(a) == sorted(b) and "class_embedding.weight" in a
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)

    components = msdiff.load_pipeline(folder)
    assert components.unet.config.num_class_embeds == 3
    assert components.scheduler["_class_name"] == "DDPMScheduler"
