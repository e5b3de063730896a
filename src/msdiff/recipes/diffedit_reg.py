"""DiffEdit's inversion regularisation (diffusers' StableDiffusionDiffEditPipeline.invert with num_reg_steps > 0,
borrowed from Pix2Pix-Zero, Parmar et al. 2023): each guided noise prediction takes num_reg_steps rounds of
gradient steps toward an IID standard normal, num_auto_corr_rolls steps on the auto-correlation loss then one on
the KL term, each gradient taken w.r.t. the noise prediction only (no backprop through the UNet).

The gradients are analytic (float32, the same sums diffusers' autograd forms), so they run inside the compiled
step in graph mode as in PyNative. The random roll shifts (diffusers' torch.randint draws) are per-call inputs:
drawn in diffusers' order from msdiff's generator, or a caller's recorded shifts.

    eps -> for each round: for each roll: eps -= lambda_auto_corr * d auto_corr(eps, shifts) / rolls
                           eps -= lambda_kl * d kl(eps)
auto_corr(x) = sum over samples, channels and the 2x average-pooled pyramid (until the height is <= 8) of
mean(x * roll_h(x, s))^2 + mean(x * roll_w(x, s))^2, one shift s per (sample, channel, level) and roll;
kl(x) = var(x) + mean(x)^2 - 1 - log(var(x) + 1e-7) over the whole prediction (var unbiased).
"""
from typing import Optional

import mindspore as ms
import numpy as np
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops


def pyramid_heights(height: int) -> tuple:
    """Heights of auto_corr_loss's levels: the latent height, halved (floor) while above 8."""
    heights = [int(height)]
    while heights[-1] > 8:
        heights.append(heights[-1] // 2)
    return tuple(heights)


def shift_highs(batch: int, channels: int, height: int) -> np.ndarray:
    """The exclusive upper bound of every shift of one auto-correlation roll, in diffusers' draw order (sample,
    channel, level): torch.randint(level height // 2)."""
    highs = np.asarray([h // 2 for h in pyramid_heights(height)], np.int64)
    return np.tile(highs, batch * channels)


def _roll(x: Tensor, s: Tensor, axis: int) -> Tensor:
    """torch.roll(x[r], s[r], axis) for every row r of x (r, h, w): out[k] = x[(k - s) mod n] along axis."""
    r, h, w = x.shape
    n = x.shape[axis]
    idx = ops.floor_mod(ops.arange(n, dtype=ms.int32).reshape((1, n)) - s.reshape((-1, 1)), n)
    idx = idx.reshape((r, n, 1)) if axis == 1 else idx.reshape((r, 1, n))
    return ops.gather_elements(x, axis, ops.broadcast_to(idx, (r, h, w)))


def _level_grad(x: Float[Tensor, "r h w"], s: Tensor) -> Float[Tensor, "r h w"]:
    """d/dx of mean(x * roll_h(x, s))^2 + mean(x * roll_w(x, s))^2 per row."""
    n = float(x.shape[1] * x.shape[2])
    grad = None
    for axis in (1, 2):
        plus, minus = _roll(x, s, axis), _roll(x, -s, axis)
        c = (2.0 * (x * plus).mean(axis=(1, 2)) / n).reshape((-1, 1, 1))
        g = c * plus + c * minus
        grad = g if grad is None else grad + g
    return grad


def _pool(x: Tensor) -> Tensor:
    """avg_pool2d(kernel 2) of (r, h, w), odd edges dropped."""
    r, h, w = x.shape
    x = x[:, :2 * (h // 2), :2 * (w // 2)]
    return x.reshape((r, h // 2, 2, w // 2, 2)).mean(axis=(2, 4))


def _unpool(g: Tensor, h: int, w: int) -> Tensor:
    """The adjoint of _pool: each value / 4 on its 2x2 window, zeros on dropped edges, (r, h, w)."""
    r, hh, ww = g.shape
    up = ops.broadcast_to(g.reshape((r, hh, 1, ww, 1)), (r, hh, 2, ww, 2)).reshape((r, 2 * hh, 2 * ww)) * 0.25
    if 2 * hh < h:
        up = ops.concat([up, ops.zeros((r, h - 2 * hh, 2 * ww), up.dtype)], axis=1)
    if 2 * ww < w:
        up = ops.concat([up, ops.zeros((r, h, w - 2 * ww), up.dtype)], axis=2)
    return up


def auto_corr_grad(x: Float[Tensor, "b c h w"], shifts: Float[Tensor, "n"], levels: int) -> Float[Tensor, "b c h w"]:
    """Gradient of diffusers' auto_corr_loss(x) w.r.t. x for one roll; shifts: b * c * levels integer values
    (float or int Tensor) in diffusers' draw order; levels = len(pyramid_heights(h)) (static)."""
    b, c, h, w = x.shape
    s = shifts.astype(ms.int32).reshape((b * c, levels))
    cur, grads, sizes = x.reshape((b * c, h, w)), [], []
    for level in range(levels):
        sizes.append(tuple(cur.shape[1:]))
        grads.append(_level_grad(cur, s[:, level]))
        if level + 1 < levels:
            cur = _pool(cur)
    total = grads[-1]
    for level in range(levels - 2, -1, -1):
        total = grads[level] + _unpool(total, *sizes[level])
    return total.reshape((b, c, h, w))


def kl_grad(x: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """Gradient of diffusers' kl_divergence(x) = var + mean^2 - 1 - log(var + 1e-7) (unbiased var, every
    element) w.r.t. x."""
    n = 1.0
    for size in x.shape:
        n = n * size
    mu = x.mean()
    d = x - mu
    var = (d * d).sum() / (n - 1.0)
    dvar = 2.0 / (n - 1.0) * d
    return dvar + dvar * (-1.0 / (var + 1e-7)) + 2.0 * mu / n


class RegularisedGuidance:
    """A guidance (NoGuidance, CFG) whose combined noise prediction is regularised as DiffEdit's invert does.

    Per call it reads the inner guidance's scales, then lambda_auto_corr, lambda_kl and the call's shifts
    (num_reg_steps * num_auto_corr_rolls * b * c * levels values), so new shifts or lambdas never recompile."""

    def __init__(self, inner, shifts: Optional[np.ndarray], height: int, num_reg_steps: int,
                 lambda_auto_corr: float, lambda_kl: float, num_auto_corr_rolls: int):
        self.inner = inner
        self.levels = len(pyramid_heights(height))
        self.copies = inner.copies
        self.inputs = inner.inputs
        self.reg_steps, self.rolls = int(num_reg_steps), int(num_auto_corr_rolls)
        self.lambdas = (float(lambda_auto_corr), float(lambda_kl))
        self.use_ac = self.lambdas[0] > 0 and self.rolls > 0
        self.use_kl = self.lambdas[1] > 0
        self.shifts = np.zeros((0, 0), np.float32) if shifts is None else np.asarray(shifts, np.float32)
        self.per_call = int(self.shifts.shape[1]) if self.shifts.ndim == 2 else 0
        self.n_scales = inner.n_scales + 2 + self.per_call
        self.key = ("diffedit_reg", inner.key, self.reg_steps, self.rolls, self.use_ac, self.use_kl,
                    self.levels)

    def scales(self, i: int, n: int) -> tuple:
        extra = tuple(float(v) for v in self.shifts[i]) if self.per_call else ()
        return tuple(self.inner.scales(i, n)) + self.lambdas + extra

    def expand(self, x: Tensor) -> Tensor:
        return self.inner.expand(x)

    def conditional(self, t: Tensor, b: int) -> Tensor:
        return self.inner.conditional(t, b)

    def pad_conditional(self, r: Tensor) -> Tensor:
        return self.inner.pad_conditional(r)

    def combine(self, out: Tensor, b: int, inputs: tuple, scales: Tensor) -> Tensor:
        k = self.inner.n_scales
        eps = self.inner.combine(out, b, inputs, scales[:k] if k else scales)
        lam_ac, lam_kl, shifts = scales[k], scales[k + 1], scales[k + 2:]
        per_roll = self.per_call // max(self.reg_steps * self.rolls, 1)
        for r in range(self.reg_steps):
            if self.use_ac:
                for j in range(self.rolls):
                    start = (r * self.rolls + j) * per_roll
                    grad = auto_corr_grad(eps, shifts[start:start + per_roll], self.levels) / float(self.rolls)
                    eps = eps - lam_ac * grad
            if self.use_kl:
                eps = eps - lam_kl * kl_grad(eps)
        return eps


def draw_shifts(noise_src, calls: int, num_reg_steps: int, num_auto_corr_rolls: int, batch: int, channels: int,
                height: int) -> np.ndarray:
    """Every call's shifts (calls, num_reg_steps * num_auto_corr_rolls * batch * channels * levels), drawn from
    the recipe's generator (noise_src's seeded numpy PCG64) in diffusers' order: call, round, roll, sample,
    channel, level."""
    highs = np.tile(shift_highs(batch, channels, height), calls * num_reg_steps * num_auto_corr_rolls)
    # the recipe's one generator: the VAE draw came first, as in diffusers
    return noise_src.integers(highs).astype(np.float32).reshape((calls, -1))


def check_shifts(reg_shifts, calls: int, per_call: int) -> np.ndarray:
    """Recorded shifts (diffusers' torch.randint values, in draw order; any shape) as (calls, per_call)."""
    a = np.asarray(reg_shifts.asnumpy() if isinstance(reg_shifts, Tensor) else reg_shifts)
    if a.dtype.kind not in "iu" and not (a.dtype.kind == "f" and np.all(a == np.round(a))):
        raise ValueError(f"invert: reg_shifts must be integers (diffusers' torch.randint draws), got dtype {a.dtype}")
    if a.size != calls * per_call:
        raise ValueError(f"invert: reg_shifts has {a.size} values, the regularisation draws {calls * per_call} "
                         f"({calls} steps x {per_call} per step)")
    return a.astype(np.float32).reshape((calls, per_call))
