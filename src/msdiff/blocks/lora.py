"""Runtime LoRA: a Linear / Conv2d plus the low-rank updates of every loaded adapter, all inputs of the graph.

Each wrapped layer holds the adapters' matrices stacked along the rank axis (`lora_down` [R, in(, kh, kw)],
`lora_up` [out, R(, 1, 1)]) and a mix [R, A] mapping the net's adapter weights [A] (one Parameter shared
by every wrapped layer of the net) to a scale per rank column (alpha / r of its adapter):

    y = base(x) + up(down(x) * (mix @ weights))

so a new adapter weight, an adapter switched off (weight 0), or new matrices of the same ranks are
Parameter values, never a new graph. `ParameterWriter` writes them: a `Parameter.set_data` made in PyNative does
not reach a graph compiled earlier (MindSpore 2.10 keeps its own buffer), an `ops.assign` run in a graph does.
The base weight and bias stay the wrapped layer's own Parameters (same names, so fusing writes them).
"""
import numpy as np
import mindspore as ms
from jaxtyping import Float
from mindspore import Parameter, ParameterTuple, Tensor, nn

from .. import ops
from .layers import Conv2d, Linear

# setters are compiled per tuple of Parameters; this many per graph keeps MindSpore's call depth in bounds
_ASSIGN_CHUNK = 256


def adapter_weights(values: np.ndarray, name: str) -> Parameter:
    """The per-net vector of adapter weights [A] (fp32), shared by every LoRA layer of one net."""
    return Parameter(Tensor(np.asarray(values, np.float32)), name=name, requires_grad=False)


def _param(value: np.ndarray, dtype, name: str) -> Parameter:
    return Parameter(Tensor(value).astype(dtype), name=name, requires_grad=False)


class _LoRA(nn.Cell):
    """Shared parameter set-up of the LoRA layers: base weight/bias, stacked matrices, mix, shared weights."""

    def _init_lora(self, base, down: np.ndarray, up: np.ndarray, mix: np.ndarray, weights: Parameter,
                   name: str) -> None:
        self.weight, self.bias = base.weight, base.bias
        dtype = base.weight.dtype
        self.lora_down = _param(down, dtype, f"{name}.lora_down")
        self.lora_up = _param(up, dtype, f"{name}.lora_up")
        self.lora_mix = _param(mix.astype(np.float32), ms.float32, f"{name}.lora_mix")
        self.lora_weights = weights

    def _scales(self, dtype) -> Tensor:
        """Per-rank-column scale [1, R]: the adapter weights mixed by alpha / r."""
        return ops.linear(self.lora_weights.reshape(1, -1), self.lora_mix).astype(dtype)


class LoRALinear(_LoRA):
    """Linear with runtime LoRA: x W^T + b + ((x D^T) * s) U^T."""

    def __init__(self, base: Linear, down: np.ndarray, up: np.ndarray, mix: np.ndarray, weights: Parameter,
                 name: str):
        super().__init__()
        self._init_lora(base, down, up, mix, weights, name)

    def construct(self, x: Float[Tensor, "... i"]) -> Float[Tensor, "... o"]:
        h = ops.linear(x, self.lora_down) * self._scales(x.dtype)
        return ops.linear(x, self.weight, self.bias) + ops.linear(h, self.lora_up)


class LoRAConv2d(_LoRA):
    """Conv2d with runtime LoRA: the down conv has the base's kernel, stride and padding, the up conv is 1x1."""

    def __init__(self, base: Conv2d, down: np.ndarray, up: np.ndarray, mix: np.ndarray, weights: Parameter,
                 name: str):
        super().__init__()
        if base.groups != 1:
            raise ValueError(f"LoRA on {name}: a grouped convolution (groups={base.groups}) is not supported")
        self.stride, self.padding, self.groups = base.stride, base.padding, base.groups
        self._init_lora(base, down, up, mix, weights, name)

    def construct(self, x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b o oh ow"]:
        out = ops.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)
        h = ops.conv2d(x, self.lora_down, stride=self.stride, padding=self.padding)
        h = h * self._scales(x.dtype).reshape(1, -1, 1, 1)
        return out + ops.conv2d(h, self.lora_up)


class _Assign(nn.Cell):
    """Graph that writes values into Parameters in place (what graphs compiled before then read)."""

    def __init__(self, params):
        super().__init__()
        self.params = ParameterTuple(params)

    def construct(self, values: tuple):
        for p, v in zip(self.params, values):
            ms.ops.assign(p, v)
        return values[0]


class ParameterWriter:
    """writer(values) writes numpy arrays / Tensors into a fixed list of Parameters in place, through graphs
    compiled on the first call only (in chunks, which keeps MindSpore's call depth in bounds)."""

    def __init__(self, params: list):
        self.params = list(params)
        self._graphs = [ms.jit(_Assign(self.params[i:i + _ASSIGN_CHUNK]))
                        for i in range(0, len(self.params), _ASSIGN_CHUNK)]

    def __call__(self, values: list) -> None:
        if len(values) != len(self.params):
            raise ValueError(f"ParameterWriter: {len(values)} values for {len(self.params)} parameters")
        tensors = []
        for p, v in zip(self.params, values):
            t = v if isinstance(v, Tensor) else Tensor(np.ascontiguousarray(v))
            if tuple(t.shape) != tuple(p.shape):
                raise ValueError(f"ParameterWriter: {p.name} has shape {p.shape}, the value {t.shape}")
            tensors.append(t.astype(p.dtype))
        for i, graph in enumerate(self._graphs):
            graph(ms.mutable(tuple(tensors[i * _ASSIGN_CHUNK:(i + 1) * _ASSIGN_CHUNK])))
