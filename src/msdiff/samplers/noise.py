"""Where random numbers come from: recorded arrays, a callable, or a seeded numpy generator, drawn in order."""
from typing import Callable, Optional, Sequence, Union

import numpy as np
from jaxtyping import Float
from mindspore import Tensor

NoiseInput = Union[None, Sequence, Callable]


class NoiseSource:
    """Standard-normal draws in order: from recorded arrays (`noise`), a callable(shape), or a seeded numpy PCG64.

    Every random tensor of a recipe (initial latents, VAE posterior samples, img2img noise, ancestral / LCM step
    noise) comes from `draw(shape)`, outside any compiled graph, so a seed gives the same image in PyNative and
    graph mode. `generator` may be a numpy Generator used instead of a fresh one seeded with `seed`.
    """

    def __init__(self, seed: Optional[int] = None, noise: NoiseInput = None,
                 generator: Optional[np.random.Generator] = None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = seed
        self._fn = noise if callable(noise) else None
        self._list = None if noise is None or callable(noise) else list(noise)
        self._rng = generator if generator is not None else np.random.default_rng(seed)
        self.count = 0

    def draw(self, shape) -> Float[Tensor, "..."]:
        """The next standard-normal float32 Tensor of `shape`."""
        shape = tuple(int(s) for s in shape)
        i, self.count = self.count, self.count + 1
        if self._list is not None:
            if i >= len(self._list):
                raise ValueError(f"noise: the recipe needs more than the {len(self._list)} noise arrays given "
                                 f"(draw {i} of shape {shape})")
            value = self._list[i]
        elif self._fn is not None:
            value = self._fn(shape)
        else:
            value = self._rng.standard_normal(shape, dtype=np.float32)
        value = value.asnumpy() if isinstance(value, Tensor) else np.asarray(value)
        if value.shape != shape:
            raise ValueError(f"noise: draw {i} has shape {value.shape}, the recipe needs {shape}")
        return Tensor(value.astype(np.float32))

    def integers(self, high) -> np.ndarray:
        """Integers in [0, high) (high: an int or an array of bounds) from this source's generator, after the draws
        so far (recorded noise replaces only the normal draws)."""
        return self._rng.integers(0, high)


def noise_source(seed: Optional[int] = None, noise=None) -> NoiseSource:
    """`noise` if it already is a NoiseSource, else a NoiseSource over seed / recorded noise / a numpy Generator."""
    if isinstance(noise, NoiseSource):
        return noise
    if isinstance(noise, np.random.Generator):
        return NoiseSource(seed, generator=noise)
    return NoiseSource(seed, noise)
