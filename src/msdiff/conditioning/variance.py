"""Guidance for nets that also predict their variance (DeepFloyd IF, the unCLIP decoder): the guided eps, the
conditional copy's variance."""
from mindspore import Tensor
from mindspore import ops

from .guidance import CFG


class CFGVariance(CFG):
    """Classifier-free guidance (Ho & Salimans 2022) on the first `channels` output channels (eps); the remaining
    channels (a learned variance, Nichol & Dhariwal 2021) are the conditional copy's, as diffusers' IF and unCLIP
    pipelines combine them before a learned-variance DDPM step."""

    def __init__(self, scale: float, channels: int):
        super().__init__(scale)
        if self.tensor_scale:
            raise TypeError("CFGVariance takes a float guidance scale")
        self.channels = int(channels)
        self.key = self.key + ("variance", self.channels)

    def combine(self, out: Tensor, b: int, inputs: tuple, scales: Tensor) -> Tensor:
        k = self.channels
        eps = super().combine(out[:, :k], b, inputs, scales)
        return ops.concat([eps, out[b:, k:]], axis=1)
