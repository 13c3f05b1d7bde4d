"""The diffusion action refiner (paper appendix A.3): a DiT decoder with AdaLN conditioning and
Mixture-of-Attention fusion that truncate-denoises the action expert's coarse trajectories."""

from refiner.anchors import AnchorConfig, mode_anchors
from refiner.denoiser import DenoiseOutput, DenoiserConfig, TrainingEstimates, TruncatedDenoiser
from refiner.model import RefinerConfig, RefinerMemory, TrajectoryRefiner
from refiner.noise import (
    NOISE_MODELS,
    AdditiveNoise,
    DiffusionDriveV2Noise,
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
from refiner.selection import SELECTIONS, predicted_cost, select_candidate

__all__ = [
    "NOISE_MODELS",
    "SCHEDULERS",
    "SELECTIONS",
    "AdditiveNoise",
    "AnchorConfig",
    "DenoiseOutput",
    "DenoiserConfig",
    "DiffusionDriveV2Noise",
    "MultiplicativeNoise",
    "NoiseModel",
    "RefinerConfig",
    "RefinerMemory",
    "ScheduleConfig",
    "TrainingEstimates",
    "TrajectoryRefiner",
    "TruncatedDenoiser",
    "available_noise_models",
    "build_noise_model",
    "build_scheduler",
    "mode_anchors",
    "predicted_cost",
    "reverse_process",
    "select_candidate",
    "set_truncated_timesteps",
    "truncated_timesteps",
]
