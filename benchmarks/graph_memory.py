"""Peak RSS of one PixArt-shaped forward, or one SD-1.5 UNet step, in a fresh process.

`python -m benchmarks.graph_memory MODE LAYERS H W [HEADS HEAD_DIM]`: PixArt (random weights, caption 8 x 32);
H, W latent size (tokens = H * W / 4).
`python -m benchmarks.graph_memory unet MODE LATENT [DTYPE]`: SD-1.5's UNet (released config, cheap random weights
as benchmarks.nets_bench), one batch-2 step at LATENT x LATENT, 77 context tokens; DTYPE float32 (default) or
float16. Stops itself (exit 3) above MSDIFF_BENCH_STOP_MB (default 12,000) resident.

MODE graph | pynative. Prints one JSON line: base_mb (RSS before the first call, net built), peak_mb (ru_maxrss
after it, compile included), peak_after_second_mb (after a second call), s, second_s. Run one case per process
(ru_maxrss is per process). See benchmarks/README.md "Graph-mode memory".
"""
import json
import os
import resource
import sys
import threading
import time

import numpy as np

from ._timing import current_rss_mb


def _stop_above(limit_mb: float) -> None:
    """A daemon thread that ends the process (exit 3) once its RSS passes limit_mb (the machine has no swap)."""
    def watch():
        while True:
            if current_rss_mb() > limit_mb:
                print(json.dumps(dict(stopped_above_mb=limit_mb)), flush=True)
                os._exit(3)
            time.sleep(0.05)
    threading.Thread(target=watch, daemon=True).start()


def _pixart(mode: str, layers: int, H: int, W: int, heads: int, hd: int):
    import mindspore as ms
    from msdiff.nets.pixart import PixArtConfig, PixArtTransformer2DModel
    cfg = PixArtConfig(num_attention_heads=heads, attention_head_dim=hd, num_layers=layers,
                       cross_attention_dim=heads * hd, caption_channels=32, sample_size=128)
    net = PixArtTransformer2DModel(cfg)
    net.set_train(False)
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((2, 4, H, W)).astype(np.float32))
    ctx = ms.Tensor(rng.standard_normal((2, 8, 32)).astype(np.float32))
    res = ms.Tensor(np.array([[H * 8, W * 8]] * 2, np.float32))
    ar = ms.Tensor(np.array([[H / W]] * 2, np.float32))
    t = ms.Tensor(np.array([500.0, 500.0], np.float32))

    def f(x, t, ctx, res, ar):
        return net(x, t, ctx, None, res, ar)
    info = dict(net="pixart", mode=mode, layers=layers, tokens=H * W // 4, heads=heads, head_dim=hd)
    return f, (x, t, ctx, res, ar), info


def _unet(mode: str, latent: int, dtype: str):
    import mindspore as ms
    from . import specs
    from .nets_bench import build_net
    net = build_net({"net": "unet", "dtype": dtype, "config": specs.SD15_UNET})
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((2, 4, latent, latent)).astype(np.float32))
    ctx = ms.Tensor(rng.standard_normal((2, specs.TEXT_TOKENS, 768)).astype(np.float32))
    t = ms.Tensor(np.full((2,), 999.0, np.float32))

    def f(x, t, ctx):
        return net(x, t, ctx)
    return f, (x, t, ctx), dict(net="unet", mode=mode, latent=latent, dtype=dtype)


def main(argv: list) -> None:
    _stop_above(float(os.environ.get("MSDIFF_BENCH_STOP_MB", 12000)))
    import mindspore as ms
    ms.runtime.launch_blocking()
    if argv[0] == "unet":
        f, args, info = _unet(argv[1], int(argv[2]), argv[3] if len(argv) > 3 else "float32")
    else:
        f, args, info = _pixart(argv[0], int(argv[1]), int(argv[2]), int(argv[3]),
                                int(argv[4]) if len(argv) > 4 else 16, int(argv[5]) if len(argv) > 5 else 12)
    if info["mode"] == "graph":
        f = ms.jit(f)
    base = current_rss_mb()
    t0 = time.time()
    out = f(*args).astype(ms.float32).asnumpy()
    dt = time.time() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.time()
    f(*args).asnumpy()
    dt2 = time.time() - t0
    peak2 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(info, base_mb=round(base), peak_mb=round(peak), peak_after_second_mb=round(peak2),
                          s=round(dt, 1), second_s=round(dt2, 1), finite=bool(np.isfinite(out).all()),
                          out=float(np.abs(out).mean()))))


if __name__ == "__main__":
    main(sys.argv[1:])
