"""Peak RSS of one PixArt-shaped forward in a fresh process.

`python -m benchmarks.graph_memory MODE LAYERS H W [HEADS HEAD_DIM]`

MODE graph | pynative; H, W latent size (tokens = H * W / 4); prints one JSON line (peak_mb: ru_maxrss, includes compile).
Run one case per process (ru_maxrss is per process). See benchmarks/README.md "Graph-mode memory".
"""
import json
import resource
import sys
import time
mode, layers, H, W = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
heads = int(sys.argv[5]) if len(sys.argv) > 5 else 16
hd = int(sys.argv[6]) if len(sys.argv) > 6 else 12

import numpy as np
import mindspore as ms
ms.runtime.launch_blocking()
from msdiff.nets.pixart import PixArtConfig, PixArtTransformer2DModel
cfg = PixArtConfig(num_attention_heads=heads, attention_head_dim=hd, num_layers=layers, cross_attention_dim=heads*hd,
                   caption_channels=32, sample_size=128)
net = PixArtTransformer2DModel(cfg)
net.set_train(False)
rng = np.random.default_rng(0)
x = ms.Tensor(rng.standard_normal((2, 4, H, W)).astype(np.float32))
ctx = ms.Tensor(rng.standard_normal((2, 8, 32)).astype(np.float32))
res = ms.Tensor(np.array([[H*8, W*8]] * 2, np.float32)); ar = ms.Tensor(np.array([[H / W]] * 2, np.float32))
t = ms.Tensor(np.array([500.0, 500.0], np.float32))
def f(x, t, ctx, res, ar):
    return net(x, t, ctx, None, res, ar)
if mode == "graph":
    f = ms.jit(f)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.time()
out = f(x, t, ctx, res, ar).asnumpy()
dt = time.time() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(dict(mode=mode, layers=layers, tokens=H * W // 4, heads=heads, head_dim=hd,
                      base_mb=round(base), peak_mb=round(peak), s=round(dt, 1), out=float(np.abs(out).mean()))))
