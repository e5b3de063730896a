"""IP-Adapter image tokens: appended after the text tokens of the net's context, after the ControlNets have read
the text alone (diffusers gives a ControlNet `prompt_embeds`, the UNet's IP-Adapter attentions the image embeds)."""
from jaxtyping import Float
from mindspore import Tensor
from mindspore import ops

from .pieces import Piece


class ImageTokens(Piece):
    """Image tokens [r, T, d], batched like the guidance-expanded net input, concatenated to the net's
    encoder_hidden_states inside the step (the IP-Adapter attentions read the last T context tokens). A
    "residual" piece: it runs with the ControlNets and adapters and changes only what the net itself sees."""

    role = "residual"

    def __init__(self, tokens: Float[Tensor, "r t d"]):
        self.inputs = (tokens,)
        self.key = ("image_tokens", tuple(tokens.shape[1:]))

    def add(self, res: dict, x: Tensor, xin: Tensor, t: Tensor, kw: dict, inputs: tuple, scales: Tensor,
            guidance) -> dict:
        ctx = kw["encoder_hidden_states"]
        out = {}
        for name in res:
            out[name] = res[name]
        out["encoder_hidden_states"] = ops.concat((ctx, inputs[0].astype(ctx.dtype)), axis=1)
        return out
