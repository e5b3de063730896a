"""msdiff.samplers: diffusers' schedulers as plain functions with explicit state.

Design
------
* Schedules are numpy functions (`schedules`): betas, alphas_cumprod, timestep spacing, Karras /
  exponential / beta / flow-shift sigmas, computed in the dtypes diffusers 0.35.2 uses (betas and
  alphas_cumprod in float32 as torch makes them, timesteps in float64 then cast, sigmas from the
  float32 alphas_cumprod), so timesteps and sigmas equal diffusers'.
* A `Sampler` (frozen dataclass) is what `from_config(scheduler_config_dict)` returns. It holds a
  schedule builder and one pure step function. `sampler.schedule(n)` gives a `Schedule`: the
  per-model-call tables diffusers' `set_timesteps` would make (timesteps, sigmas, init_noise_sigma,
  `scale_model_input(x, i)`, and a float32 coefficient row per call).
* The step is `step(x, out, state, c, noise) -> (x_next, state)`: x the sample, out the raw net output,
  state a tuple of Tensors, c the coefficient row of this call (a Tensor, so one compiled graph
  serves every step), noise a Tensor drawn outside (None for deterministic samplers). It compiles
  with `mindspore.jit` once per sampler and shape (`jit_step`).
* Prediction types are not branches in samplers: `denoiser.prediction_coefficients` tabulates, for
  each call, the linear map net output -> (x0, eps) for "epsilon", "v_prediction", "sample" or
  "flow_prediction"; every step applies it with `denoiser.to_x0_eps`. Guidance and other conditioning wrap
  the net before it reaches the loop (`msdiff.conditioning`).
* Multi-stage methods (Heun, KDPM2, PNDM's Runge-Kutta warm-up) follow diffusers' call layout (one
  row per net call, a flag column selects the stage), so every sampler runs in the one loop
  (`loop.sample_steps` yields (i, x) after each call for progress, preview and early stop; `loop.sample`
  runs it with an optional callback). Multistep history (PLMS, DPM-Solver++, UniPC, LMS) is the state tuple.
* Noise: stochastic samplers (`sampler.stochastic`) draw from a `NoiseSource` (seeded numpy, recorded
  arrays or a callable(shape)) only at calls where `schedule.needs_noise[i]`, outside compiled code.
* img2img: `img2img_schedule(sampler, n, strength)` keeps the calls diffusers' pipelines keep
  (t_start * order; LCM folds strength into its schedule), restarting multistep state there;
  `add_noise(schedule, x0, noise)` noises x0 to the first kept call.

Samplers (diffusers class -> factory): DDIMScheduler vp.ddim, DDPMScheduler vp.ddpm, PNDMScheduler
vp.pndm, LCMScheduler vp.lcm, EulerDiscreteScheduler k.euler, EulerAncestralDiscreteScheduler
k.euler_ancestral, HeunDiscreteScheduler k.heun, KDPM2DiscreteScheduler k.kdpm2,
KDPM2AncestralDiscreteScheduler k.kdpm2_ancestral, LMSDiscreteScheduler k.lms,
DPMSolverMultistepScheduler dpm.dpm_solver_multistep, UniPCMultistepScheduler dpm.unipc_multistep,
EDMEulerScheduler edm.edm_euler, CMStochasticIterativeScheduler edm.consistency,
FlowMatchEulerDiscreteScheduler edm.flow_match_euler.

Typical use::

    sampler = samplers.resolve_sampler(scheduler_config, "euler")   # or from_config(config, eta=...)
    schedule = sampler.schedule(num_inference_steps)
    model = conditioning.compose(unet, conditioning.NetInputs(encoder_hidden_states=ctx),
                                 guidance=conditioning.CFG(7.5))
    noise = samplers.NoiseSource(seed=0)
    x = noise.draw(shape) * schedule.init_noise_sigma
    x = samplers.sample(model, x, schedule, sampler, noise, callback=None, mode="graph")
"""
from .config import SAMPLERS, from_config
from .core import Sampler, Schedule, add_noise, img2img_schedule, img2img_start
from .denoiser import combine_guidance, prediction_coefficients, rescale_noise_cfg, threshold, to_x0_eps
from .loop import FiniteTracker, Model, NonFiniteError, as_model, sample, sample_steps
from .noise import NoiseSource, noise_source
from .resolve import resolve_sampler, sampler_names
from . import schedules

__all__ = [
    "SAMPLERS", "from_config", "Sampler", "Schedule", "add_noise", "img2img_schedule", "img2img_start",
    "combine_guidance", "prediction_coefficients", "rescale_noise_cfg", "threshold", "to_x0_eps", "FiniteTracker",
    "Model", "NonFiniteError", "as_model", "sample", "sample_steps", "NoiseSource", "noise_source",
    "resolve_sampler", "sampler_names", "schedules",
]
