"""AutoencoderKL rows."""
from pathlib import Path

import numpy as np

from . import Row, call, tensor


def rows(fix: Path) -> list:
    import msdiff
    if not (fix / "vae.npz").is_file():
        return []

    def run(mode, dtype):
        d = dict(np.load(fix / "vae.npz"))
        vae = msdiff.load(fix / "vae", dtype=dtype)

        def f(image, latent):
            mean, logvar = vae.encode(image)
            return mean, logvar, vae.decode(latent)

        mean, logvar, decoded = call(f, mode, tensor(d["image"]), tensor(d["latent"]))
        return [(mean, d["mean"]), (logvar, d["logvar"]), (decoded, d["decoded"])]

    return [Row("AutoencoderKL (encode + decode)", "net", run)]
