"""The shipped digit model's data and architecture, and `train_digits` (the `msdiff train` command)."""
import shutil
from pathlib import Path

import numpy as np

UNET_CONFIG = dict(
    sample_size=16, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(16, 32, 64),
    norm_num_groups=8, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), attention_head_dim=32,
    num_class_embeds=11,  # ten digits plus the "no label" class used for classifier-free guidance
)


def digits_16x16() -> tuple:
    """scikit-learn's digits as float32 [1797, 1, 16, 16] in [-1, 1] (bilinear 8x8 -> 16x16) and int labels."""
    from PIL import Image
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError("training the digit model needs scikit-learn (its load_digits data set): "
                         "pip install scikit-learn") from None
    data = load_digits()
    images = np.stack([np.asarray(Image.fromarray((img / 16.0).astype(np.float32), mode="F")
                                  .resize((16, 16), Image.BILINEAR)) for img in data.images])
    images = np.clip(images, 0.0, 1.0) * 2.0 - 1.0
    return images[:, None].astype(np.float32), data.target.astype(np.int64)


def train_digits(out_dir, *, steps: int = 2000, seed: int = 0, batch_size: int = 32, learning_rate: float = 2e-3,
                 ema_decay: float = 0.995, save_every: int = 100, export=None) -> Path:
    """Train (or resume, from out_dir) the class-conditional digit model; optionally copy the pipeline to export.

    Under msrun the global batch_size is split across the workers and rank 0 alone writes out_dir and export.
    """
    from ..distributed import world
    from .train import train_unconditional
    images, labels = digits_16x16()
    train_unconditional(images, labels, out_dir=out_dir, unet_config=UNET_CONFIG, num_steps=steps,
                        batch_size=batch_size, learning_rate=learning_rate, warmup_steps=50, ema_decay=ema_decay,
                        beta_schedule="squaredcos_cap_v2", label_dropout=0.1, seed=seed, save_every=save_every)
    if export is None or not world().is_main:
        return Path(out_dir)
    dest = Path(export)
    for name in ("unet", "scheduler"):
        shutil.rmtree(dest / name, ignore_errors=True)
        shutil.copytree(Path(out_dir) / name, dest / name)
    shutil.copy(Path(out_dir) / "model_index.json", dest / "model_index.json")
    return dest
