"""Train msdiff's shipped class-conditional digit model on scikit-learn's `load_digits` (BSD licence).

    python tools/train_digits.py --out runs/digits --steps 2000 --export src/msdiff/assets/digits

(the same as `msdiff train --out runs/digits --steps 2000`, plus --export). The 1,797 8x8 digits
(grey levels 0-16) are resized bilinearly to 16x16 and scaled to [-1, 1]. Training is resumable:
rerunning with the same --out continues from its last checkpoint. --export copies the pipeline part
of the checkpoint (model_index.json, unet/, scheduler/) there.
"""
import argparse


def main(argv=None) -> None:
    """Command line: train (or resume) and optionally export the pipeline folder."""
    from msdiff.recipes.digits import train_digits

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/digits", help="checkpoint folder (resumed if it exists)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--ema-decay", type=float, default=0.995)
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export", default=None, help="copy the trained pipeline folder here")
    args = parser.parse_args(argv)
    train_digits(args.out, steps=args.steps, seed=args.seed, batch_size=args.batch_size, learning_rate=args.lr,
                 ema_decay=args.ema_decay, save_every=args.save_every, export=args.export)


if __name__ == "__main__":
    main()
