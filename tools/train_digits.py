"""Train msdiff's shipped class-conditional digit model on scikit-learn's `load_digits` (BSD licence).

    python tools/train_digits.py --out runs/digits --steps 1000
    python tools/train_digits.py --out runs/digits --steps 1000 --export src/msdiff/assets/digits

The 1,797 8x8 digits (grey levels 0-16) are resized bilinearly to 16x16 and scaled to [-1, 1].
Training is resumable: rerunning with the same --out continues from its last checkpoint.
--export copies the pipeline part of the checkpoint (model_index.json, unet/, scheduler/) there.
"""
import argparse
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
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.stack([np.asarray(Image.fromarray((img / 16.0).astype(np.float32), mode="F")
                                  .resize((16, 16), Image.BILINEAR)) for img in data.images])
    images = np.clip(images, 0.0, 1.0) * 2.0 - 1.0
    return images[:, None].astype(np.float32), data.target.astype(np.int64)


def main(argv=None) -> None:
    """Command line: train (or resume) and optionally export the pipeline folder."""
    from msdiff.recipes.train import train_unconditional

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/digits", help="checkpoint folder (resumed if it exists)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--ema-decay", type=float, default=0.995)
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export", default=None, help="copy the trained pipeline folder here")
    args = parser.parse_args(argv)
    images, labels = digits_16x16()
    train_unconditional(images, labels, out_dir=args.out, unet_config=UNET_CONFIG, num_steps=args.steps,
                        batch_size=args.batch_size, learning_rate=args.lr, warmup_steps=50,
                        ema_decay=args.ema_decay, beta_schedule="squaredcos_cap_v2", label_dropout=0.1,
                        seed=args.seed, save_every=args.save_every)
    if args.export:
        dest = Path(args.export)
        for name in ("unet", "scheduler"):
            shutil.rmtree(dest / name, ignore_errors=True)
            shutil.copytree(Path(args.out) / name, dest / name)
        shutil.copy(Path(args.out) / "model_index.json", dest / "model_index.json")


if __name__ == "__main__":
    main()
