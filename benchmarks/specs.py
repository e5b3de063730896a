"""The benchmark cases as plain data (no MindSpore, no torch): shapes, configs and FLOP counts shared by both sides."""

# Stable Diffusion 1.5's unet/config.json and vae/config.json (runwayml/stable-diffusion-v1-5), architecture keys.
SD15_UNET = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False, "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
SD15_VAE = {
    "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3, "latent_channels": 4, "layers_per_block": 2,
    "norm_num_groups": 32, "out_channels": 3, "sample_size": 512, "up_block_types": ["UpDecoderBlock2D"] * 4,
}
# Same block structure, tiny widths: what --smoke runs.
TINY_UNET = dict(SD15_UNET, block_out_channels=[32, 64], attention_head_dim=2, cross_attention_dim=32,
                 layers_per_block=1, norm_num_groups=8, sample_size=8,
                 down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                 up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"])
TINY_VAE = dict(SD15_VAE, block_out_channels=[16], layers_per_block=1, norm_num_groups=8, sample_size=4,
                down_block_types=["DownEncoderBlock2D"], up_block_types=["UpDecoderBlock2D"])

TEXT_TOKENS = 77
DTYPES = ("float32", "float16")
MODES = ("pynative", "graph")


def short_dtype(dtype: str) -> str:
    """'float32' -> 'fp32'."""
    return {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(dtype, dtype)


def op_cases(smoke: bool) -> list:
    """The op microbenchmarks this suite adds to ops_bench: attention, group norm, FIR up/down, the target conv."""
    if smoke:
        attn, gn, fir, conv = (1, 2, 64, 8), ((1, 32, 8, 8), 8), (1, 4, 8, 8), (1, 8, 8, 8)
    else:
        attn, gn, fir, conv = (2, 8, 4096, 40), ((2, 320, 64, 64), 32), (1, 128, 128, 128), (1, 320, 64, 64)
    cases = []
    b, h, n, d = attn
    for dtype in DTYPES:
        cases.append({"op": "attention", "shape": [b, h, n, d], "dtype": dtype, "flops": 4 * b * h * n * n * d,
                      "label": f"attention q=k=v {b}x{h}x{n}x{d}"})
    shape, groups = gn
    numel = 1
    for s in shape:
        numel *= s
    for dtype in DTYPES:
        # nominal 8 flops/element: mean, centre, square, sum, scale, shift, affine mul, affine add
        cases.append({"op": "group_norm", "shape": list(shape), "groups": groups, "dtype": dtype,
                      "flops": 8 * numel, "label": f"group_norm {'x'.join(map(str, shape))} g{groups}"})
    kernel, k = [1, 3, 3, 1], 4
    fb, fc, fh, fw = fir
    cases.append({"op": "upsample_fir", "shape": list(fir), "kernel": kernel, "factor": 2, "dtype": "float32",
                  "flops": 2 * k * k // 4 * fb * fc * 4 * fh * fw,
                  "label": f"upsample_fir {'x'.join(map(str, fir))} k(1,3,3,1) x2"})
    cases.append({"op": "downsample_fir", "shape": list(fir), "kernel": kernel, "factor": 2, "dtype": "float32",
                  "flops": 2 * k * k * fb * fc * (fh // 2) * (fw // 2),
                  "label": f"downsample_fir {'x'.join(map(str, fir))} k(1,3,3,1) /2"})
    cb, cc, ch, cw = conv
    cases.append({"op": "conv2d", "shape": list(conv), "out": cc, "kernel_size": 3, "padding": 1, "dtype": "float32",
                  "flops": 2 * cb * cc * ch * cw * cc * 9, "label": f"conv2d {'x'.join(map(str, conv))} 3x3 ->{cc}"})
    return cases


def net_cases(smoke: bool) -> list:
    """UNet step (batch 2, CFG) at 32/64 latents and VAE decode to 256/512, each mode and dtype.

    Smoke: a tiny UNet in PyNative and a tiny VAE in PyNative and graph mode, fp32 (graph compile of
    even a tiny UNet takes ~20 s, too long for a smoke test).
    """
    if smoke:
        nets = [("unet", TINY_UNET, 8, "tiny", ("pynative",)), ("vae", TINY_VAE, 4, "tiny", MODES)]
        dtypes = ("float32",)
    else:
        nets = [("unet", SD15_UNET, s, "sd15", MODES) for s in (32, 64)]
        nets += [("vae", SD15_VAE, s, "sd15", MODES) for s in (32, 64)]
        dtypes = DTYPES
    cases = []
    for net, config, latent, tag, modes in nets:
        scale = 2 ** (len(config["block_out_channels"]) - 1)
        if net == "unet":
            label = f"unet {tag} step {latent}x{latent} b2"
        else:
            label = f"vae {tag} decode {latent * scale}x{latent * scale} b1"
        for dtype in dtypes:
            for mode in modes:
                cases.append({"kind": "net", "net": net, "config": config, "latent": latent,
                              "batch": 2 if net == "unet" else 1, "dtype": dtype, "mode": mode, "label": label,
                              "id": f"{label} {short_dtype(dtype)} {mode}"})
    return cases


def reference_net_cases(cases: list) -> list:
    """The eager PyTorch cases matching msdiff net cases (one per net/shape/dtype; mode does not apply)."""
    seen, out = set(), []
    for c in cases:
        key = (c["label"], c["dtype"])
        if key not in seen:
            seen.add(key)
            out.append(dict(c, mode="eager", id=f"{c['label']} {short_dtype(c['dtype'])}"))
    return out
