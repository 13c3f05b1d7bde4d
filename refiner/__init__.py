"""The diffusion action refiner (paper appendix A.3): a DiT decoder with AdaLN conditioning and
Mixture-of-Attention fusion that truncate-denoises the action expert's coarse trajectories."""

from refiner.denoiser import DenoiseOutput, DenoiserConfig, TruncatedDenoiser, select_candidate
from refiner.model import RefinerConfig, RefinerMemory, TrajectoryRefiner
from refiner.noise import (
    NOISE_MODELS,
    AdditiveNoise,
    MultiplicativeNoise,
    NoiseModel,
    available_noise_models,
    build_noise_model,
)
from refiner.schedule import (
    SCHEDULERS,
    ScheduleConfig,
    build_scheduler,
    reverse_process,
    set_truncated_timesteps,
    truncated_timesteps,
)

__all__ = [
    "NOISE_MODELS",
    "SCHEDULERS",
    "AdditiveNoise",
    "DenoiseOutput",
    "DenoiserConfig",
    "MultiplicativeNoise",
    "NoiseModel",
    "RefinerConfig",
    "RefinerMemory",
    "ScheduleConfig",
    "TrajectoryRefiner",
    "TruncatedDenoiser",
    "available_noise_models",
    "build_noise_model",
    "build_scheduler",
    "reverse_process",
    "select_candidate",
    "set_truncated_timesteps",
    "truncated_timesteps",
]
