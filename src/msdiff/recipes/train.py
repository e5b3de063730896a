"""Denoising training of a (class-conditional) UNet2DModel, saved as diffusers DDPMPipeline folders.

`train_unconditional` fits epsilon-prediction (Ho et al. 2020, Algorithm 1) with AdamW and an EMA
of the weights. All randomness (batch indices, timesteps, noise, label dropout) is drawn with numpy
from a Generator seeded by (seed, step), so a run resumed from a checkpoint continues exactly as the
uninterrupted run would. Under msrun it trains data-parallel: every rank draws the same global batch
and takes its contiguous share, the loss and gradients are averaged over ranks (sum all-reduces / N),
so every rank takes the same step (the single-process run's, up to fp32 summation order), and rank 0
alone writes checkpoints. Checkpoints are diffusers-layout pipeline folders:

    model_index.json                       DDPMPipeline: unet + scheduler
    unet/config.json                       UNet2DModel config (EMA weights below)
    unet/diffusion_pytorch_model.safetensors
    scheduler/scheduler_config.json        DDPMScheduler
    training_state.safetensors             raw and EMA weights, AdamW moments; its metadata holds the
                                           step and the UNet config (the one file resume reads)
    training_state.json                    step, seconds, workers, global batch (for people)

Each file is written to a temporary name and renamed, so a run killed while saving resumes from the
previous checkpoint.
"""
import json
import math
import time
from pathlib import Path
from typing import Callable, Optional

import mindspore as ms
import numpy as np
from jaxtyping import Float, Int
from mindspore import Parameter, ParameterTuple, Tensor, nn
from mindspore import ops as mops
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from ..distributed import (MeanOverRanks, World, batch_share, broadcast_from_main, check_same, world,
                           write_atomically)
from ..nets.unet_2d import UNet2DModel, config_from_diffusers
from ..samplers.schedules import alphas_cumprod

DIFFUSERS_VERSION = "0.35.2"
STATE_FILE = "training_state.safetensors"
STATE_JSON = "training_state.json"


def check_dataset(images: np.ndarray, labels: Optional[np.ndarray], num_classes: Optional[int]) -> None:
    """ValueError unless images is a non-empty [N, C, H, W] float array in [-1, 1] and labels match it."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be an array [N, C, H, W]; got shape {images.shape}")
    if images.shape[0] == 0:
        raise ValueError("the dataset is empty (images has 0 rows)")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be floats in [-1, 1]; got dtype {images.dtype}")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1.0001 or hi > 1.0001 or not math.isfinite(lo + hi):
        raise ValueError(f"images must lie in [-1, 1]; got values in [{lo}, {hi}]")
    if labels is None:
        if num_classes:
            raise ValueError("the model is class-conditional (num_class_embeds set); pass labels")
        return
    labels = np.asarray(labels)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape [N] = [{images.shape[0]}]; got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers; got dtype {labels.dtype}")
    if not num_classes:
        raise ValueError("labels given but unet_config has no num_class_embeds")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}); got [{labels.min()}, {labels.max()}]")


def scheduler_config(beta_schedule: str, num_train_timesteps: int, class_name: str = "DDPMScheduler") -> dict:
    """A diffusers scheduler_config.json dict for epsilon prediction with the training betas."""
    return {"_class_name": class_name, "_diffusers_version": DIFFUSERS_VERSION,
            "num_train_timesteps": num_train_timesteps, "beta_start": 0.0001, "beta_end": 0.02,
            "beta_schedule": beta_schedule, "trained_betas": None, "variance_type": "fixed_small",
            "clip_sample": True, "clip_sample_range": 1.0, "prediction_type": "epsilon",
            "thresholding": False, "timestep_spacing": "leading", "steps_offset": 0,
            "rescale_betas_zero_snr": False}


def _named(net: nn.Cell) -> dict:
    return {name: p for name, p in net.parameters_and_names()}


def _write_json(path: Path, value: dict) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(value, indent=2) + "\n"))


def _write_tensors(path: Path, tensors: dict, metadata: dict) -> None:
    write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def save_pipeline(folder: "str | Path", unet_config: dict, weights: dict, sched: dict) -> Path:
    """Write a diffusers DDPMPipeline folder (model_index.json, unet/, scheduler/) from numpy weights."""
    folder = Path(folder)
    (folder / "unet").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    config = {"_class_name": "UNet2DModel", "_diffusers_version": DIFFUSERS_VERSION, **unet_config}
    _write_json(folder / "unet" / "config.json", config)
    _write_tensors(folder / "unet" / "diffusion_pytorch_model.safetensors",
                   {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(weights.items())},
                   {"format": "pt"})
    _write_json(folder / "scheduler" / "scheduler_config.json", sched)
    index = {"_class_name": "DDPMPipeline", "_diffusers_version": DIFFUSERS_VERSION,
             "scheduler": ["diffusers", sched["_class_name"]], "unet": ["diffusers", "UNet2DModel"]}
    _write_json(folder / "model_index.json", index)
    return folder


def _batch(step: int, seed: int, images: np.ndarray, labels, acp: np.ndarray, batch_size: int,
           label_dropout: float, null_label: int):
    """Noised inputs of one step from a Generator seeded by (seed, step): x_t, t, labels, eps."""
    rng = np.random.default_rng([seed, step])
    idx = rng.integers(0, images.shape[0], batch_size)
    t = rng.integers(0, acp.shape[0], batch_size)
    eps = rng.standard_normal((batch_size,) + images.shape[1:]).astype(np.float32)
    a = acp[t].reshape(-1, 1, 1, 1)
    x_t = (np.sqrt(a) * images[idx] + np.sqrt(1 - a) * eps).astype(np.float32)
    y = None
    if labels is not None:
        y = labels[idx].astype(np.int32)
        if label_dropout > 0:
            y = np.where(rng.random(batch_size) < label_dropout, null_label, y).astype(np.int32)
    return x_t, t.astype(np.int32), y, eps


class _Trainer(nn.Cell):
    """One AdamW step on the epsilon MSE (loss and gradients averaged over ranks) plus the EMA update.

    Compiled as a whole when jit is on.
    """

    def __init__(self, unet: UNet2DModel, optimizer: nn.Optimizer, ema: ParameterTuple, num_ranks: int):
        super().__init__(auto_prefix=False)
        self.unet, self.optimizer, self.ema = unet, optimizer, ema
        self.params = optimizer.parameters
        self.grad_fn = ms.value_and_grad(self.loss, None, self.params)
        self.mean_over_ranks = MeanOverRanks(num_ranks)

    def loss(self, x_t, t, y, eps):
        pred = self.unet(x_t, t, y)
        return ((pred - eps) ** 2).mean()

    def construct(self, x_t, t, y, eps, decay):
        loss, grads = self.grad_fn(x_t, t, y, eps)
        reduced = self.mean_over_ranks((loss,) + grads)
        loss, grads = reduced[0], reduced[1:]
        grads = mops.clip_by_global_norm(grads, 1.0)
        loss = mops.depend(loss, self.optimizer(grads))
        for e, p in zip(self.ema, self.params):
            loss = mops.depend(loss, mops.assign(e, e * decay + p * (1 - decay)))
        return loss


def train_unconditional(images: Float[np.ndarray, "n c h w"], labels: Optional[Int[np.ndarray, "n"]] = None, *,
                        out_dir: "str | Path", unet_config: Optional[dict] = None, num_steps: int = 1000,
                        batch_size: int = 64, learning_rate: float = 1e-3, weight_decay: float = 0.0,
                        warmup_steps: int = 100, ema_decay: float = 0.999, beta_schedule: str = "squaredcos_cap_v2",
                        num_train_timesteps: int = 1000, label_dropout: float = 0.0, seed: int = 0,
                        save_every: Optional[int] = None, resume: bool = True, jit: bool = True,
                        progress: bool = True, on_step: Optional[Callable[[int, float], None]] = None) -> UNet2DModel:
    """Train a UNet2DModel to predict the noise (DDPM eps-MSE, AdamW, EMA); returns the EMA net.

    The EMA decay warms up as min(ema_decay, (1 + step) / (10 + step)), as diffusers' EMAModel does.

    unet_config: diffusers UNet2DModel config keys (num_class_embeds set for class conditioning; with
    label_dropout > 0 one extra "null" class, index num_class_embeds - 1, is trained for guidance).
    batch_size: the global batch; under msrun each of N ranks computes batch_size / N of it.
    resume: continue from out_dir's training state if out_dir holds one (its UNet config wins).
    on_step(step, loss) runs after every step with the loss of the global batch (on every rank).
    """
    from tqdm.auto import tqdm

    w = world()
    out_dir = Path(out_dir)
    start, seconds_before = 0, 0.0
    if resume and (out_dir / STATE_FILE).is_file():
        unet_config, start, seconds_before = _read_state_meta(out_dir)
    check_same(start, f"the step {out_dir} resumes from", w)
    if unet_config is None:
        raise ValueError("pass unet_config (a diffusers UNet2DModel config dict) or resume from a checkpoint")
    num_embeds = unet_config.get("num_class_embeds")
    num_classes = (num_embeds - 1 if label_dropout > 0 else num_embeds) if num_embeds else None
    check_dataset(images, labels, num_classes)
    if batch_size <= 0 or num_steps < 0:
        raise ValueError(f"batch_size must be positive and num_steps >= 0; got {batch_size}, {num_steps}")
    share = batch_share(batch_size, w)
    images = np.asarray(images, dtype=np.float32)
    labels = None if labels is None else np.asarray(labels)
    acp = alphas_cumprod(beta_schedule, num_train_timesteps).astype(np.float64)
    sched = scheduler_config(beta_schedule, num_train_timesteps)

    ms.set_seed(seed)
    unet = UNet2DModel(config_from_diffusers(unet_config))
    unet.set_train(True)
    params = _named(unet)
    lr = learning_rate
    if warmup_steps:
        lr = [min(learning_rate, learning_rate * (i + 1) / warmup_steps) for i in range(max(num_steps, 1))]
    optimizer = nn.AdamWeightDecay(list(params.values()), learning_rate=lr, weight_decay=weight_decay)
    ema = ParameterTuple([Parameter(p.value().copy(), name="ema." + n, requires_grad=False)
                          for n, p in params.items()])
    if start:
        _load_state(out_dir, params, ema, optimizer, start)
    broadcast_from_main(list(params.values()) + list(ema) + list(optimizer.moments1) + list(optimizer.moments2), w)
    trainer = _Trainer(unet, optimizer, ema, w.size)

    def step_fn(x_t, t, y, eps, decay):
        return trainer(x_t, t, y, eps, decay)

    run = ms.jit(step_fn) if jit else step_fn
    null_label = (num_embeds - 1) if label_dropout > 0 else 0
    every = save_every or num_steps
    desc = "train" if w.size == 1 else f"train ({w.size} workers)"
    bar = tqdm(range(start, num_steps), total=num_steps, initial=start, disable=not progress or not w.is_main,
               desc=desc)
    avg = None
    t0 = time.perf_counter()
    for step in bar:
        x_t, t, y, eps = _batch(step, seed, images, labels, acp, batch_size, label_dropout, null_label)
        decay = Tensor(min(ema_decay, (1 + step) / (10 + step)), ms.float32)
        loss = float(run(Tensor(x_t[share]), Tensor(t[share]), None if y is None else Tensor(y[share]),
                         Tensor(eps[share]), decay).asnumpy())
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss became {loss} at step {step}")
        if on_step is not None:
            on_step(step, loss)
        avg = loss if avg is None else 0.98 * avg + 0.02 * loss
        bar.set_postfix(loss=f"{avg:.4f}")
        if w.is_main and ((step + 1) % every == 0 or step + 1 == num_steps):
            _save(out_dir, unet_config, sched, params, ema, optimizer, step + 1,
                  seconds_before + time.perf_counter() - t0, w, batch_size)
    if w.is_main and start >= num_steps and not (out_dir / "model_index.json").is_file():
        _save(out_dir, unet_config, sched, params, ema, optimizer, start, seconds_before, w, batch_size)
    for p, e in zip(params.values(), ema):
        p.set_data(e.value().copy())
    unet.set_train(False)
    return unet


def _save(out_dir: Path, unet_config: dict, sched: dict, params: dict, ema: ParameterTuple,
          optimizer: nn.Optimizer, step: int, seconds: float, w: World, batch_size: int) -> None:
    """The resume state first (one file: raw and EMA weights, AdamW moments, step), then the EMA pipeline."""
    names = list(params)
    ema_weights = {n: e.asnumpy() for n, e in zip(names, ema)}
    state = {f"param/{n}": p.asnumpy() for n, p in params.items()}
    state.update({f"ema/{n}": v for n, v in ema_weights.items()})
    state.update({f"m/{n}": m.asnumpy() for n, m in zip(names, optimizer.moments1)})
    state.update({f"v/{n}": v.asnumpy() for n, v in zip(names, optimizer.moments2)})
    meta = {"step": str(step), "seconds": f"{seconds:.1f}", "unet_config": json.dumps(unet_config)}
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_tensors(out_dir / STATE_FILE, state, meta)
    save_pipeline(out_dir, unet_config, ema_weights, sched)
    _write_json(out_dir / STATE_JSON, {"step": step, "seconds": round(seconds, 1), "workers": w.size,
                                       "global_batch_size": batch_size})


def _read_state_meta(out_dir: Path) -> tuple:
    """(unet_config, step, seconds) of out_dir's resume state."""
    with safe_open(str(out_dir / STATE_FILE), framework="np") as f:
        meta = f.metadata() or {}
    if "step" not in meta:
        raise ValueError(f"{out_dir / STATE_FILE} has no step in its metadata (written by an older msdiff): "
                         f"train into a new folder")
    return json.loads(meta["unet_config"]), int(meta["step"]), float(meta.get("seconds", 0.0))


def _load_state(out_dir: Path, params: dict, ema: ParameterTuple, optimizer: nn.Optimizer, step: int) -> None:
    """Restore raw weights, EMA weights and AdamW moments (and its step counter) from a checkpoint."""
    state = load_file(str(out_dir / STATE_FILE))
    names = list(params)
    missing = [n for n in names if any(f"{k}/{n}" not in state for k in ("param", "ema", "m", "v"))]
    if missing:
        raise ValueError(f"{out_dir / STATE_FILE} does not match unet_config: missing {missing[:5]}")
    for n, e, m, v in zip(names, ema, optimizer.moments1, optimizer.moments2):
        params[n].set_data(Tensor(state[f"param/{n}"]))
        e.set_data(Tensor(state[f"ema/{n}"]))
        m.set_data(Tensor(state[f"m/{n}"]))
        v.set_data(Tensor(state[f"v/{n}"]))
    if hasattr(optimizer, "global_step"):
        optimizer.global_step.set_data(Tensor([step], ms.int32))
