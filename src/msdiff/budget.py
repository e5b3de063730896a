"""Memory budget: refuse a denoising loop or a VAE decode up front when it cannot fit, with the estimate.

`check_step(net, shape, mode, copies)` runs where every recipe's denoising passes (`msdiff.samplers.sample_steps`,
before the first step); `check_decode(vae, shape)` where the SD-style recipes make their initial latents (the decode
comes after every step, so it is checked before the first). Each raises `MemoryBudgetError` (a MemoryError) with
one line: the estimate, the memory this machine has available (MemAvailable of /proc/meminfo: the net's weights are
already loaded, so they are not counted again), and what to try instead (a smaller size, fp16, PyNative, VAE
tiling). MSDIFF_MEMORY_CHECK=0 (or `set_memory_check(False)`) turns the check off; where /proc/meminfo is
unreadable, or the net is of a kind the model below does not know, nothing is checked.

The model: one step holds, on top of the weights, `k x A + min(c, k2 x A)` bytes, where A is the largest activation of the
net at that size in fp32 (batch x channels x pixels at the widest level for UNets and the VAE decoder; batch x
tokens x width for patch transformers) and k, c, k2 are per kind of net and mode, fitted to the peaks measured by
`python -m benchmarks.realsize` (released architectures at native sizes; benchmarks/README.md "Real sizes" has
the measurements and this model's error on each).
"""
import math
import os
from typing import Optional, Tuple

ENV = "MSDIFF_MEMORY_CHECK"
_STATE = {"enabled": None}
_MIB = 2 ** 20

# (kind, mode) -> (k, c in MiB, k2): extra bytes of one call over the resident weights = k * A + min(c * MiB, k2 * A).
# Fitted to the
# fp32 peaks of benchmarks/realsize (2026-12-02; benchmarks/README.md "Real sizes" lists each point and the error):
# - unet PyNative: SD-1.5 512 and SD-2.1 768 peak the same ~1.08 GB over the weights (attention scores and conv
#   columns are chunked to 128 MiB each, ops.attention / ops._matmul_conv): c is those transients, k = 10 the
#   skip and working feature maps; below the chunk budgets (LDM 256: 375 MB) the transients scale with A (k2).
# - unet graph: LDM 256 and SD-2.1 768 (after the graph-memory fixes of f21bfd8); the compiled graph keeps more
#   feature maps alive, so k is larger.
# - decoder PyNative: the SD VAE decode at 512 (its 128-channel 512x512 last up block is A).
# - transformer: DiT-XL/2 256 and PixArt-XL-2 1024 in PyNative; graph adds ~380 MB of compiled kernels for 28
#   blocks (DiT graph; the Graph-mode memory section).
MODEL = {
    ("unet", "pynative"): (10.0, 980.0, 140.0),
    ("unet", "graph"): (110.0, 900.0, math.inf),
    ("transformer", "pynative"): (23.5, 25.0, math.inf),
    ("transformer", "graph"): (23.5, 380.0, math.inf),
    ("decoder", "pynative"): (16.5, 300.0, math.inf),
}


class MemoryBudgetError(MemoryError):
    """A requested size needs more memory than this machine has available (the message says what to try)."""


def set_memory_check(enabled: Optional[bool]) -> None:
    """Turn the up-front memory check on / off for this process (None: back to MSDIFF_MEMORY_CHECK, default on)."""
    _STATE["enabled"] = enabled


def memory_check_enabled() -> bool:
    """Whether check_step / check_decode refuse oversized requests (set_memory_check, else MSDIFF_MEMORY_CHECK)."""
    if _STATE["enabled"] is not None:
        return bool(_STATE["enabled"])
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def available_bytes() -> Optional[int]:
    """MemAvailable of /proc/meminfo in bytes (None where it cannot be read)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def weight_bytes(net) -> int:
    """Bytes of the net's parameters (0 for an object without parameters)."""
    params = getattr(net, "get_parameters", None)
    if not callable(params):
        return 0
    total = 0
    for p in params():
        total += math.prod(p.shape) * getattr(p, "itemsize", 4)
    return total


def _get(config, name, default=None):
    return config.get(name, default) if isinstance(config, dict) else getattr(config, name, default)


def _spatial(shape: tuple) -> Tuple[int, int]:
    """(samples, pixels per sample and channel) of latents [b, c, h, w], [b, c, f, h, w] or [b, f, c, h, w]."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 5 and shape[2] < shape[1]:  # [b, f, c, h, w] (SVD): frames count as samples
        return shape[0] * shape[1], shape[3] * shape[4]
    return shape[0], math.prod(shape[2:])


def step_activation(net, shape: tuple, copies: int = 1) -> Optional[Tuple[str, int]]:
    """(kind, A bytes) of one call of `net` on latents of `shape` (times `copies` for guidance), or None if unknown."""
    config = getattr(net, "config", None)
    if config is None:
        return None
    samples, pixels = _spatial(shape)
    samples *= max(1, copies)
    channels = _get(config, "block_out_channels")
    if channels and _get(config, "down_block_types"):
        widest = max(c / 4 ** i for i, c in enumerate(channels))
        return "unet", int(samples * widest * pixels * 4)
    heads, head_dim, patch = (_get(config, k) for k in ("num_attention_heads", "attention_head_dim", "patch_size"))
    if isinstance(heads, int) and isinstance(head_dim, int) and isinstance(patch, int) and patch > 0:
        return "transformer", int(samples * (pixels // (patch * patch)) * heads * head_dim * 4)
    return None


def decode_activation(vae, shape: tuple) -> Optional[int]:
    """A bytes of decoding latents of `shape` with an SD-style VAE (None if `vae` has no block_out_channels)."""
    channels = _get(getattr(vae, "config", None), "block_out_channels")
    if not channels:
        return None
    samples, pixels = _spatial(shape)
    n = len(channels)
    widest = max(channels[n - 1 - j] * 4 ** j for j in range(n))  # up block j runs at 2^j x the latent size
    return int(samples * widest * pixels * 4)


def estimate(kind: str, mode: str, activation: int) -> int:
    """Extra bytes (over the resident weights) of one call: k * A + min(c, k2 * A) for (kind, mode)."""
    k, c, k2 = MODEL[(kind, mode)]
    return int(k * activation + min(c * _MIB, k2 * activation))


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.1f} GiB"


def _refuse(what: str, need: int, have: int, hints: list) -> None:
    raise MemoryBudgetError(f"{what} needs about {_gib(need)} of memory beyond the loaded weights (msdiff.budget "
                            f"estimate), this machine has {_gib(have)} available: {'; '.join(hints)}; or set "
                            f"{ENV}=0 to run anyway")


def check_step(net, shape: tuple, mode: str, copies: int = 1) -> None:
    """MemoryBudgetError before the first step when one call of `net` on latents `shape` would not fit."""
    if not memory_check_enabled():
        return
    got = step_activation(net, shape, copies)
    have = available_bytes()
    if got is None or have is None:
        return
    kind, act = got
    need = estimate(kind, mode, act)
    if need <= have:
        return
    hints = []
    if mode == "graph":
        other = estimate(kind, "pynative", act)
        hints.append(f"mode='pynative' (about {_gib(other)}{', fits' if other <= have else ''})")
    k, c, _ = MODEL[(kind, mode)]
    side = math.sqrt(max(have - c * _MIB, 0) / (k * act)) if act else 0.0
    hints.append(f"a smaller size (up to about {side:.2f}x this height and width fits the estimate) or fewer "
                 f"images per prompt")
    if "32" in str(getattr(net, "compute_dtype", "")):
        hints.append("dtype='float16' (halves the weights)")
    name = type(net).__name__
    _refuse(f"{name} in {mode} mode on latents {tuple(int(d) for d in shape)}"
            f"{f' (x{copies} with guidance)' if copies > 1 else ''}", need, have, hints)


def check_decode(vae, shape: tuple) -> None:
    """MemoryBudgetError before the first step when decoding latents of `shape` would not fit (VAE decode is
    PyNative)."""
    if not memory_check_enabled():
        return
    act = decode_activation(vae, shape)
    have = available_bytes()
    if act is None or have is None:
        return
    need = estimate("decoder", "pynative", act)
    if need <= have:
        return
    _refuse(f"decoding latents {tuple(int(d) for d in shape)} with {type(vae).__name__}", need, have,
            [f"decode in tiles (output_type='latent' with {ENV}=0, then msdiff.nets.autoencoder_kl.tiled_decode)",
             "a smaller size", "fewer images per prompt"])


def guidance_copies(x_shape: tuple, inputs: tuple) -> int:
    """How many copies of the batch one net call sees: the largest multiple of the batch among the Model's
    batched inputs (2 with classifier-free guidance, 3 with InstructPix2Pix), 1 without; at most 3."""
    b = int(x_shape[0]) if x_shape else 1
    best = 1
    for v in inputs:
        shape = getattr(v, "shape", None)
        if shape is not None and len(shape) >= 2 and b > 0 and int(shape[0]) % b == 0:
            best = max(best, min(3, int(shape[0]) // b))
    return best
