"""msdiff.conditioning: small pieces that turn a net into the sampling loop's Model, and compose.

    model = compose(unet,
                    NetInputs(encoder_hidden_states=cfg_batch(neg, pos)),      # what the net sees
                    ControlNet(cn, image, 0.8), ControlNet(cn2, image2, 0.5),   # residuals, any number
                    Adapter(features, calls=30),                                # adapter features
                    ExtraChannels(mask_and_masked_latents),                     # inpainting UNet channels
                    guidance=CFG(7.5, rescale=0.7))                             # or NoGuidance / Pix2Pix
    x = msdiff.samplers.sample(model, x, schedule, sampler, noise, mode="graph")

`Blend` (4-channel inpainting), `TakeChannels` (learned-sigma outputs) and per-frame guidance (CFG with a
Tensor scale) compose the same way; img2img's start is `start_from_image`. The whole guided step, every piece
included, is one compiled graph per shape; scales, gates and windows are per-call floats.
"""
from .compose import compose, scales_at
from .control import Adapter, ControlNet
from .guidance import CFG, NoGuidance, Pix2Pix, cfg_batch
from .pieces import Blend, ExtraChannels, NetInputs, Piece, TakeChannels
from .start import make_schedule, start_from_image, truncate
from .variance import CFGVariance

__all__ = ["compose", "scales_at", "Adapter", "ControlNet", "CFG", "NoGuidance", "Pix2Pix", "cfg_batch", "Blend",
           "ExtraChannels", "NetInputs", "Piece", "TakeChannels", "make_schedule", "start_from_image", "truncate",
           "CFGVariance"]
