"""Measure the shipped digit model: does a classifier trained on real digits see the class that was asked for?

    python tools/eval_digits.py                         # the shipped model, the default sampling settings
    python tools/eval_digits.py --model runs/digits --steps 25 --guidance 2.0

A scikit-learn LogisticRegression is fitted on the real `load_digits` images with the training
preprocessing (bilinear 16x16); 200 samples (20 per class) are generated with fixed seeds and the
fraction classified as their requested class is reported, next to the same figure for pure noise
(chance, ~10%) and the classifier's accuracy on held-out real digits.
"""
import argparse
import json
import time

import numpy as np

from msdiff.recipes.digits import digits_16x16


def classifier(seed: int = 0):
    """LogisticRegression on 80% of the real digits (pixels in [0, 1]); returns (model, held-out accuracy)."""
    from sklearn.linear_model import LogisticRegression

    images, labels = digits_16x16()
    x = (images.reshape(len(images), -1) + 1) / 2
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    model = LogisticRegression(max_iter=5000).fit(x[order[:cut]], labels[order[:cut]])
    return model, float(model.score(x[order[cut:]], labels[order[cut:]]))


def evaluate(components=None, *, per_class: int = 20, num_inference_steps: int = 25, guidance_scale=None,
             sampler: str = "ddim", seed: int = 0) -> dict:
    """Class accuracy of generated digits (and of noise) under the real-digit classifier, with timings."""
    from msdiff.recipes.unconditional import DIGITS_GUIDANCE_SCALE, load_digits_model, unconditional

    components = components or load_digits_model()
    guidance_scale = DIGITS_GUIDANCE_SCALE if guidance_scale is None else guidance_scale
    model, held_out = classifier()
    labels = np.repeat(np.arange(10), per_class)
    null = components.unet.config.num_class_embeds - 1 if guidance_scale != 1.0 else None
    t0 = time.perf_counter()
    images = unconditional(components, batch_size=labels.size, num_inference_steps=num_inference_steps,
                           class_labels=labels, guidance_scale=guidance_scale, null_class_label=null, seed=seed,
                           sampler=sampler, output_type="np")
    seconds = time.perf_counter() - t0
    generated = float((model.predict(images.reshape(labels.size, -1)) == labels).mean())
    noise = np.random.default_rng(seed + 1).uniform(0, 1, (labels.size, images[0].size))
    chance = float((model.predict(noise) == labels).mean())
    return {"samples": int(labels.size), "sampler": sampler, "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale, "seed": seed, "generated_accuracy": generated,
            "noise_accuracy": chance, "classifier_held_out_accuracy": held_out,
            "sampling_seconds": round(seconds, 1)}


def main(argv=None) -> None:
    """Command line: print the evaluation as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="pipeline folder (default: the shipped model)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    components = None
    if args.model:
        import msdiff

        components = msdiff.load_pipeline(args.model)
    result = evaluate(components, per_class=args.per_class, num_inference_steps=args.steps,
                      guidance_scale=args.guidance, sampler=args.sampler, seed=args.seed)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
