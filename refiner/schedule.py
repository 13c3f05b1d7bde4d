"""Diffusers schedulers for truncated denoising: a registry, the truncated timestep grid, the reverse loop.

Truncation (DiffusionDrive, paper A.3): instead of starting from pure noise at t = T-1, the reverse
process starts from the perturbed prior at `t_start` and runs `num_steps` model evaluations. The grid
is the "trailing" one: with stride s = (t_start + 1) / num_steps the timesteps are

    t_start, t_start - s, ..., s - 1          (num_steps values)

and the last step goes to the clean sample (t = -1, alpha = 1). So `t_start=19, num_steps=2` gives
[19, 9], and every step count that divides t_start + 1 shares one starting noise level. DDIM has no
`timesteps=` argument, so for it the grid comes from `set_timesteps(T / s)` with trailing spacing and
the part at or below t_start is kept (then s must also divide T); schedulers that accept custom
timesteps get the list directly.

All schedulers are configured with `prediction_type="sample"` (the network predicts x0) and without
sample clipping (normalised trajectories are not bounded by 1).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import diffusers
import torch

from automot.checks import check_choice, check_positive
from automot.registry import Registry

SCHEDULERS: Registry[type] = Registry("scheduler")
SCHEDULERS.register("ddim")(diffusers.DDIMScheduler)
SCHEDULERS.register("ddpm")(diffusers.DDPMScheduler)
SCHEDULERS.register("dpm_solver")(diffusers.DPMSolverMultistepScheduler)
SCHEDULERS.register("euler")(diffusers.EulerDiscreteScheduler)


@dataclass
class ScheduleConfig:
    scheduler: str = "ddim"
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    # Training draws t uniformly from [0, train_t_max) (the truncated range).
    train_t_max: int = 50
    # Inference: perturb the prior to t_start, then num_steps reverse steps.
    t_start: int = 19
    num_steps: int = 2
    # Stochasticity of a reverse step: 0 is deterministic given x_t; its meaning for > 0 depends on the
    # noise model (see refiner.noise: multiplicative per-trajectory factors, or the scheduler's own noise).
    eta: float = 0.0

    def __post_init__(self) -> None:
        check_choice("ScheduleConfig.scheduler", self.scheduler, SCHEDULERS.names())
        check_choice(
            "ScheduleConfig.beta_schedule",
            self.beta_schedule,
            ["linear", "scaled_linear", "squaredcos_cap_v2"],
        )
        check_positive("ScheduleConfig.num_train_timesteps", self.num_train_timesteps)
        if not 0 < self.train_t_max <= self.num_train_timesteps:
            raise ValueError(
                f"ScheduleConfig.train_t_max: expected 0 < train_t_max <= {self.num_train_timesteps}, got {self.train_t_max}"
            )
        check_positive("ScheduleConfig.eta", self.eta, allow_zero=True)
        truncated_timesteps(
            self.t_start,
            self.num_steps,
            self.num_train_timesteps,
            needs_uniform_grid=self.scheduler == "ddim",
        )


def build_scheduler(config: ScheduleConfig):
    """A fresh scheduler instance (schedulers are stateful: one per sampling loop owner)."""
    cls = SCHEDULERS.get(config.scheduler)
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {
        "num_train_timesteps": config.num_train_timesteps,
        "beta_schedule": config.beta_schedule,
        "prediction_type": "sample",
    }
    if "clip_sample" in accepted:
        kwargs["clip_sample"] = False
    if "thresholding" in accepted:
        kwargs["thresholding"] = False
    if cls is diffusers.DDIMScheduler:
        kwargs.update(timestep_spacing="trailing", set_alpha_to_one=True)
    return cls(**kwargs)


def accepts_custom_timesteps(scheduler) -> bool:
    return "timesteps" in inspect.signature(scheduler.set_timesteps).parameters


def truncated_timesteps(
    t_start: int, num_steps: int, num_train_timesteps: int, *, needs_uniform_grid: bool
) -> list[int]:
    """The trailing grid [t_start, t_start - s, ..., s - 1] with s = (t_start + 1) / num_steps."""
    if num_steps < 1:
        raise ValueError(f"num_steps: expected >= 1, got {num_steps}")
    if not 0 <= t_start < num_train_timesteps:
        raise ValueError(f"t_start: expected 0 <= t_start < {num_train_timesteps}, got {t_start}")
    if (t_start + 1) % num_steps:
        valid = [k * num_steps - 1 for k in range(1, 6)]
        raise ValueError(
            f"t_start: expected t_start + 1 to be a multiple of num_steps={num_steps} (trailing grid), got t_start={t_start}; "
            f"valid choices include {valid}"
        )
    stride = (t_start + 1) // num_steps
    if needs_uniform_grid and num_train_timesteps % stride:
        raise ValueError(
            f"t_start: with DDIM the stride (t_start + 1) / num_steps = {stride} must divide num_train_timesteps="
            f"{num_train_timesteps}, got t_start={t_start}, num_steps={num_steps}"
        )
    return [t_start - i * stride for i in range(num_steps)]


def set_truncated_timesteps(
    scheduler, t_start: int, num_steps: int, device: torch.device | str | None = None
) -> None:
    """Put `scheduler` on the truncated grid (see module docstring); checks it got exactly that grid."""
    total = scheduler.config.num_train_timesteps
    custom = accepts_custom_timesteps(scheduler)
    grid = truncated_timesteps(t_start, num_steps, total, needs_uniform_grid=not custom)
    if custom:
        scheduler.set_timesteps(timesteps=grid, device=device)
    else:
        stride = (t_start + 1) // num_steps
        scheduler.set_timesteps(total // stride, device=device)
        scheduler.timesteps = scheduler.timesteps[scheduler.timesteps <= t_start]
    got = [int(t) for t in scheduler.timesteps]
    if got != grid:
        raise ValueError(
            f"scheduler: {type(scheduler).__name__} produced timesteps {got} for the truncated grid {grid}; "
            "pick a scheduler that supports custom timesteps or a trailing-spaced DDIM"
        )


PredictX0 = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepFn = Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor]


def reverse_process(scheduler, x_t: torch.Tensor, predict_x0: PredictX0, *, step: StepFn) -> torch.Tensor:
    """Run the grid in `scheduler.timesteps` from x_t (B, N, 2).

    `predict_x0(x, t_batch)` returns x0_hat (B, N, 2); `step(x, x0_hat, t, t_prev)` makes one reverse
    step to the next grid timestep (t_prev = -1 after the last one: the clean end). The network sees
    the sample exactly as the forward process produced it (no `scale_model_input`: training feeds the
    perturbed plan unscaled, so sampling must too).
    """
    grid = [int(t) for t in scheduler.timesteps]
    x = x_t
    for i, t in enumerate(grid):
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        x0_hat = predict_x0(x, t_batch)
        x = step(x, x0_hat, t, grid[i + 1] if i + 1 < len(grid) else -1)
    return x
