"""The denoising part every SD-family recipe shares: the UNet wrapped in its conditioning pieces, run by the one
loop. Recipes differ in how they start (noise, an image, a mask) and which pieces they add."""
from typing import Callable, Optional, Sequence

from jaxtyping import Float
from mindspore import Tensor

from ..conditioning import compose
from ..samplers import FiniteTracker, Sampler, Schedule, sample
from .ip_adapter import ip_pieces
from .prompts import PromptEmbeds
from .sd import MicroConditioning, sd_guidance, sd_inputs


def sd_denoise(components, emb: PromptEmbeds, micro: MicroConditioning, x: Float[Tensor, "b c h w"],
               schedule: Schedule, sampler: Sampler, noise, *, guidance_scale: float, height: int, width: int,
               guidance_rescale: float = 0.0, guidance=None, pieces: Sequence = (), aesthetics: bool = False,
               callback: Optional[Callable] = None, mode: Optional[str] = None,
               tracker: Optional[FiniteTracker] = None) -> Float[Tensor, "b c h w"]:
    """Final latents: the UNet with SD / SD-XL / LCM inputs, the extra `pieces` (ControlNets, adapters, extra
    channels, blending) and guidance (default: CFG when emb has negatives), sampled over `schedule`."""
    guidance = sd_guidance(emb, guidance_scale, guidance_rescale) if guidance is None else guidance
    inputs = sd_inputs(components, emb, micro, guidance_scale=guidance_scale, height=height, width=width,
                       guidance=guidance, aesthetics=aesthetics)
    pieces = tuple(pieces) + ip_pieces(components, emb.image_tokens, guidance)
    model = compose(components.unet, inputs, *pieces, guidance=guidance)
    return sample(model, x, schedule, sampler, noise, callback, mode=mode, tracker=tracker)
