"""The diffusers (transformers for T5) side of benchmarks/realsize.py: the same case, eager PyTorch.

The net is built on torch's meta device in the case's dtype, moved to empty CPU storage and filled in place with
random values (norm weights 1, other 1-D tensors small, matrices +-1/sqrt(fan_in), as the msdiff side), so an fp16
build never holds fp32 weights and no init kernels run. Imports torch only inside `run_reference`.
"""
import time


def _build(case: dict, dtype):
    import diffusers
    import torch

    config = dict(case["config"])
    name = config.pop("_class_name")
    with torch.device("meta"):
        if name == "T5EncoderModel":
            import transformers

            config.pop("model_type", None)
            net = transformers.T5EncoderModel(transformers.T5Config(**config))
        else:
            net = getattr(diffusers, name).from_config(config)
    net = net.to(dtype).to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)
    nbytes = 0
    with torch.no_grad():
        for pname, p in list(net.named_parameters()) + list(net.named_buffers()):
            nbytes += p.numel() * p.element_size()
            if not p.is_floating_point():
                p.zero_()
            elif p.ndim == 1 and pname.endswith("weight"):
                p.fill_(1.0)
            else:
                bound = 0.01 if p.ndim <= 1 else (p.numel() // p.shape[0]) ** -0.5
                p.uniform_(-bound, bound, generator=g)
    if name == "PixArtTransformer2DModel" or name == "DiTTransformer2DModel":
        _restore_positions(net, config)
    return net.eval(), nbytes


def _restore_positions(net, config):
    """Put back the fixed sin-cos position table (a buffer to_empty left as noise)."""
    import torch
    from diffusers.models.embeddings import get_2d_sincos_pos_embed

    pe = net.pos_embed
    if getattr(pe, "pos_embed", None) is None:
        return
    grid = int(pe.pos_embed.shape[1] ** 0.5)
    table = get_2d_sincos_pos_embed(pe.pos_embed.shape[-1], grid, base_size=pe.base_size,
                                    interpolation_scale=pe.interpolation_scale, output_type="pt")
    with torch.no_grad():
        pe.pos_embed.copy_(table.float().unsqueeze(0).to(pe.pos_embed.dtype))


def run_reference(case: dict, phase, timed) -> dict:
    """Build, first call, steady call of the case in eager PyTorch (phases reported through `phase`)."""
    import numpy as np
    import torch

    from .realsize import SINGLE_ABOVE_S, case_inputs, proc_rss

    dtype = {"float32": torch.float32, "float16": torch.float16}[case["dtype"]]
    t0 = time.perf_counter()
    net, nbytes = _build(case, dtype)
    phase(build_s=time.perf_counter() - t0, weight_mb=nbytes / 2 ** 20, built_rss_mb=proc_rss()["VmRSS"])
    x = {k: torch.from_numpy(v) for k, v in case_inputs(case).items()}
    for k, v in x.items():
        if v.is_floating_point() and k != "timestep":
            x[k] = v.to(dtype)
    kind = case["net"]
    if kind == "unet":
        added = {k: x[k] for k in ("text_embeds", "time_ids") if k in x}

        def fn():
            return net(x["sample"], x["timestep"], x["encoder_hidden_states"],
                       added_cond_kwargs=added or None, return_dict=False)[0]
    elif kind == "vae":
        def fn():
            return net.decode(x["z"], return_dict=False)[0]
    elif kind == "pixart":
        added = {"resolution": x.get("resolution"), "aspect_ratio": x.get("aspect_ratio")}

        def fn():
            return net(x["sample"], encoder_hidden_states=x["encoder_hidden_states"], timestep=x["timestep"],
                       added_cond_kwargs=added, encoder_attention_mask=x["encoder_attention_mask"],
                       return_dict=False)[0]
    elif kind == "dit":
        def fn():
            return net(x["sample"], timestep=x["timestep"], class_labels=x["class_labels"], return_dict=False)[0]
    else:
        def fn():
            return net(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).last_hidden_state
    out = []

    def call():
        out[:] = [fn()]
    with torch.inference_mode():
        res = timed(call, single_above=SINGLE_ABOVE_S)
    return dict(res, finite=bool(np.isfinite(out[0].float().numpy()).all()))
