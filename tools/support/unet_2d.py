"""UNet2DModel, FIR block, DDPM / DDIM and consistency-model rows."""
import json
from pathlib import Path

import numpy as np

from . import Row, call, tensor


def _unet_2d_rows(fix: Path) -> list:
    import msdiff
    rows = []
    for name in ("uncond", "class_cond", "fourier", "ncsnpp", "cd", "class_timestep", "class_identity"):
        if not (fix / name / "io.npz").is_file():
            continue

        def run(mode, dtype, name=name):
            d = dict(np.load(fix / name / "io.npz"))
            net = msdiff.load(fix / name, dtype=dtype)

            def f(sample, t, labels):
                return net(sample, t, labels)

            got = call(f, mode, tensor(d["sample"]), tensor(d["timestep"]), tensor(d.get("class_labels")))
            return [(got[0], d["out"])]

        rows.append(Row(f"UNet2DModel ({name})", "net", run))
    return rows


FIR_BLOCKS = {  # name in unet_2d/fir_blocks.npz -> (class name, args): diffusers' FIR blocks, tiny
    "fir_up": ("FirUpsample2D", (8,), {"use_conv": False}),
    "fir_up_conv": ("FirUpsample2D", (8, 6), {"use_conv": True}),
    "fir_down": ("FirDownsample2D", (8,), {"use_conv": False}),
    "fir_down_conv": ("FirDownsample2D", (8, 6), {"use_conv": True}),
    "resnet_fir_up": ("FirUpResnetBlock2D", (8, 6, 16), {"groups": 2}),
    "resnet_fir_down": ("FirDownResnetBlock2D", (8, 6, 16), {"groups": 2}),
}


def fir_block(ref: dict, name: str, dtype):
    """The FIR block `name` with the weights stored in the fir_blocks fixture, in `dtype`."""
    from mindspore import Tensor
    from msdiff.blocks import unet_2d_model_blocks as blocks
    cls, args, kwargs = FIR_BLOCKS[name]
    block = getattr(blocks, cls)(*args, dtype=dtype, **kwargs)
    params = dict(block.parameters_and_names())
    stored = sorted(k[len(name) + 1:] for k in ref if k.startswith(name + ".") and not k.endswith(".out"))
    if sorted(params) != stored:
        raise ValueError(f"{name}: block parameters {sorted(params)} != fixture {stored}")
    for key, p in params.items():
        p.set_data(Tensor(ref[f"{name}.{key}"]).astype(dtype))
    block.set_train(False)
    return block


def _fir_rows(fix: Path) -> list:
    if not (fix / "fir_blocks.npz").is_file():
        return []
    rows = []
    for name, (cls, _, kwargs) in FIR_BLOCKS.items():
        def run(mode, dtype, name=name):
            import mindspore as ms
            ref = dict(np.load(fix / "fir_blocks.npz"))
            block = fir_block(ref, name, getattr(ms, dtype))

            def f(x, temb):
                return block(x, temb) if name.startswith("resnet") else block(x)

            return [(call(f, mode, tensor(ref["x"]).astype(getattr(ms, dtype)),
                           tensor(ref["temb"]).astype(getattr(ms, dtype)))[0], ref[name + ".out"])]

        conv = " with conv" if kwargs.get("use_conv") else ""
        rows.append(Row(f"{cls}{conv} ({name})", "block", run))
    return rows


UNCONDITIONAL_CASES = {  # name in unet_2d/pipelines.npz -> (scheduler class, sampler, steps, eta)
    "ddpm": ("DDPMScheduler", None, 10, 0.0), "ddim": ("DDIMScheduler", "ddim", 8, 0.0),
    "ddim_eta": ("DDIMScheduler", "ddim", 8, 0.5)}


def unconditional_case(fix: Path, name: str, dtype: str = "float32"):
    """(components, kwargs, expected) replaying the recorded DDPMPipeline / DDIMPipeline call `name`."""
    from msdiff.io import Components, load
    class_name, sampler, steps, eta = UNCONDITIONAL_CASES[name]
    config = dict(json.loads((fix / "schedulers.json").read_text())[name], _class_name=class_name)
    ref = np.load(fix / "pipelines.npz")
    components = Components(unet=load(fix / "uncond", dtype=dtype), scheduler=config)
    kwargs = dict(batch_size=2, num_inference_steps=steps, sampler=sampler, eta=eta,
                  noise=list(ref[name + "_noise"]), output_type="np")
    return components, kwargs, ref[name]


def _unconditional_rows(fix: Path) -> list:
    if not (fix / "pipelines.npz").is_file():
        return []
    rows = []
    for name, (cls, *_) in UNCONDITIONAL_CASES.items():
        def run(mode, dtype, name=name):
            from msdiff.recipes.unconditional import unconditional
            components, kwargs, expected = unconditional_case(fix, name, dtype)
            return [(unconditional(components, mode=mode, **kwargs), expected)]

        pipeline = "DDPMPipeline" if cls == "DDPMScheduler" else "DDIMPipeline"
        rows.append(Row(f"{pipeline} ({name})", "recipe", run))
    return rows


def _consistency_rows(fix: Path) -> list:
    if not (fix / "consistency.json").is_file():
        return []
    meta = json.loads((fix / "consistency.json").read_text())
    rows = []
    for name, run_args in sorted(meta["runs"].items()):
        def run(mode, dtype, name=name, run_args=run_args):
            from msdiff.io import Components, load
            from msdiff.recipes.consistency import consistency
            ref = dict(np.load(fix / "consistency.npz"))
            components = Components(unet=load(fix / run_args.get("unet", "class_cond"), dtype=dtype),
                                    scheduler=dict(meta["scheduler"], _class_name="CMStochasticIterativeScheduler"))
            noise = [ref[k] for k in sorted(k for k in ref if k.startswith(name + "_noise_"))]
            steps = {k: run_args[k] for k in ("num_inference_steps", "timesteps") if k in run_args}
            images = consistency(components, batch_size=2, class_labels=run_args["class_labels"], noise=noise,
                                 output_type="np", mode=mode, **steps)
            return [(images, ref[name])]

        rows.append(Row(f"ConsistencyModelPipeline ({name})", "recipe", run))
    return rows


def rows(fix: Path) -> list:
    """Every row of this area."""
    return _unet_2d_rows(fix) + _fir_rows(fix) + _unconditional_rows(fix) + _consistency_rows(fix)
