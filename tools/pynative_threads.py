"""Evidence for msdiff.io's PyNative lock: two threads calling one plain MindSpore Cell (no msdiff code) vs serial.

Run: python tools/pynative_threads.py [layers=40] [trials=10]. Prints the max abs difference between each
threaded call and the serial result of the same input; any non-zero value means MindSpore's PyNative executor
mixed the two threads' work. Measured with MindSpore 2.10 CPU (2 shared cores): 2 of the first 7 trials differed
(max abs 1.52 and 0.106); graph mode and serial PyNative are exact.
"""
import sys
import threading

import mindspore as ms
import numpy as np
from mindspore import Parameter, nn, ops


class Layer(nn.Cell):
    """matmul + bias, layer norm by hand, self-attention by hand, SiLU residual."""

    def __init__(self, rng: np.random.Generator, i: int):
        super().__init__()
        self.w = Parameter(ms.Tensor((rng.standard_normal((64, 64)) * 0.2).astype(np.float32)), name=f"w{i}")
        self.b = Parameter(ms.Tensor((rng.standard_normal(64) * 0.1).astype(np.float32)), name=f"b{i}")

    def construct(self, x):
        y = ops.matmul(x, self.w) + self.b
        m = y.mean(-1, keep_dims=True)
        y = (y - m) / ops.sqrt(((y - m) ** 2).mean(-1, keep_dims=True) + 1e-5)
        y = ops.bmm(ops.softmax(ops.bmm(y, y.swapaxes(1, 2)) * 0.05, -1), y)
        return x + ops.silu(y)


class Stack(nn.Cell):
    def __init__(self, layers: int):
        super().__init__()
        rng = np.random.default_rng(0)
        self.layers = nn.CellList([Layer(rng, i) for i in range(layers)])

    def construct(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def main(layers: int = 40, trials: int = 10) -> int:
    """Number of threaded trials whose results differ from the serial ones."""
    net = Stack(layers)
    rng = np.random.default_rng(1)
    inputs = [ms.Tensor(rng.standard_normal((2, 32, 64)).astype(np.float32)) for _ in range(2)]
    serial = [net(x).asnumpy() for x in inputs]
    differing = 0
    for trial in range(trials):
        got = [None, None]

        def work(i):
            got[i] = net(inputs[i]).asnumpy()

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        diff = max(float(np.abs(got[i] - serial[i]).max()) for i in range(2))
        differing += diff > 0
        print(f"trial {trial}: max abs difference {diff:.3g}", flush=True)
    print(f"{differing} of {trials} threaded trials differ from serial PyNative")
    return differing


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
