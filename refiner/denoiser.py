"""Truncated denoising of a coarse plan (paper appendix A.3; DiffusionDrive's truncation).

Training: the prior plan x_prior (the AE's coarse trajectories) is normalised, perturbed by the noise
model at t ~ U{0, ..., train_t_max - 1}, and the network predicts x0 given the perturbed sample and
the clean prior (its anchor); the head takes an L1 loss against the expert trajectory. With
`train_unroll=n > 1` the network is instead run along the sampler's own n-step chain from a random
start (the sample between steps detached) and every step's x0 estimate is scored, so it learns on
the partly corrected samples it meets at inference.

Inference: the prior is perturbed to `t_start` and `num_steps` reverse steps of the noise model run
(see `refiner.noise`, `refiner.schedule`); the network predicts x0 (diffusers prediction_type
"sample"). `num_samples=K` perturbs the prior K times with independent noise and returns all K
candidates plus one chosen plan (the medoid by default).

Axes: B batch, K candidates, Nw waypoints, Nr route points, Q = Nw + Nr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from automot.checks import check_choice, check_positive
from refiner.model import RefinerMemory, TrajectoryRefiner
from refiner.noise import NOISE_MODELS, build_noise_model
from refiner.schedule import (
    ScheduleConfig,
    build_scheduler,
    reverse_process,
    set_truncated_timesteps,
    truncated_timesteps,
)

SELECTIONS = ("medoid", "mean", "first")


@dataclass
class DenoiserConfig:
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    noise: str = "multiplicative"
    noise_kwargs: dict[str, Any] = field(default_factory=dict)
    # Normalisation scales (metres per unit) for (longitudinal, lateral).
    waypoint_scale: tuple[float, float] = (10.0, 2.0)
    route_scale: tuple[float, float] = (20.0, 4.0)
    num_samples: int = 1
    selection: str = "medoid"
    # Training along the sampler's chain: 1 = one perturbed prior at one t per sample.
    train_unroll: int = 1

    def __post_init__(self) -> None:
        check_choice("DenoiserConfig.noise", self.noise, NOISE_MODELS.names())
        build_noise_model(self.noise, **self.noise_kwargs)  # validates the kwargs early
        for name in ("waypoint_scale", "route_scale"):
            value = tuple(getattr(self, name))
            if len(value) != 2 or min(value) <= 0:
                raise ValueError(f"DenoiserConfig.{name}: expected two positive numbers, got {value}")
        check_positive("DenoiserConfig.num_samples", self.num_samples)
        check_positive("DenoiserConfig.train_unroll", self.train_unroll)
        check_choice("DenoiserConfig.selection", self.selection, SELECTIONS)
        if self.train_unroll > self.schedule.train_t_max:
            raise ValueError(
                f"DenoiserConfig.train_unroll: expected at most schedule.train_t_max={self.schedule.train_t_max}, "
                f"got {self.train_unroll}"
            )


@dataclass
class DenoiseOutput:
    waypoints: torch.Tensor  # (B, Nw, 2) metres
    route: torch.Tensor  # (B, Nr, 2)
    waypoint_samples: torch.Tensor  # (B, K, Nw, 2)
    route_samples: torch.Tensor  # (B, K, Nr, 2)


class TruncatedDenoiser(nn.Module):
    def __init__(self, network: TrajectoryRefiner, config: DenoiserConfig | None = None) -> None:
        super().__init__()
        self.network = network
        self.config = c = config if config is not None else DenoiserConfig()
        self.segments = network.segments
        self.noise_model = build_noise_model(c.noise, **c.noise_kwargs)
        # Schedulers are stateful; training only reads alphas, sampling calls set_timesteps per call.
        self.train_scheduler = build_scheduler(c.schedule)
        self.sample_scheduler = build_scheduler(c.schedule)
        nw, nr = self.segments
        scale = torch.cat(
            [torch.tensor([c.waypoint_scale]).expand(nw, 2), torch.tensor([c.route_scale]).expand(nr, 2)]
        )
        self.register_buffer("scale", scale.float(), persistent=False)  # (Q, 2)

    def normalize(self, waypoints: torch.Tensor, route: torch.Tensor) -> torch.Tensor:
        """(B, Nw, 2), (B, Nr, 2) metres -> (B, Q, 2) normalised."""
        return torch.cat([waypoints, route], dim=1) / self.scale

    def denormalize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., Q, 2) normalised -> waypoints (..., Nw, 2), route (..., Nr, 2) in metres."""
        return (x * self.scale).split(list(self.segments), dim=-2)

    def training_prediction(
        self,
        prior_waypoints: torch.Tensor,
        prior_route: torch.Tensor,
        memory: RefinerMemory,
        generator: torch.Generator | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """x0 estimates to score against the expert: a list of (waypoints (B, Nw, 2), route (B, Nr, 2)) in
        metres, one per network evaluation (one, or `train_unroll` along the sampler's chain)."""
        x0 = self.normalize(prior_waypoints, prior_route)
        memory = memory.with_anchor(x0)
        b, n = x0.shape[0], self.config.train_unroll
        t_max = self.config.schedule.train_t_max
        if n == 1:
            t = torch.randint(0, t_max, (b,), generator=generator, device=x0.device)
            x_t = self.noise_model.perturb(x0, t, self.train_scheduler, self.segments, generator)
            return [self.denormalize(self.network(x_t, t, memory))]
        # One start per batch on a grid the sampler could use: t_start + 1 a multiple of n.
        starts = torch.arange(n - 1, t_max, n)
        t_start = int(starts[torch.randint(0, len(starts), (1,), generator=generator)])
        grid = truncated_timesteps(
            t_start, n, self.config.schedule.num_train_timesteps, needs_uniform_grid=False
        )
        t = torch.full((b,), t_start, dtype=torch.long, device=x0.device)
        x = self.noise_model.perturb(x0, t, self.train_scheduler, self.segments, generator)
        out = []
        for i, step_t in enumerate(grid):
            t_batch = torch.full((b,), step_t, dtype=torch.long, device=x0.device)
            x0_hat = self.network(x, t_batch, memory)
            out.append(self.denormalize(x0_hat))
            t_prev = grid[i + 1] if i + 1 < len(grid) else -1
            x = self.noise_model.step(
                x, x0_hat.detach(), step_t, t_prev, self.train_scheduler, self.segments, generator
            ).detach()
        return out

    @torch.no_grad()
    def sample(
        self,
        prior_waypoints: torch.Tensor,
        prior_route: torch.Tensor,
        memory: RefinerMemory,
        generator: torch.Generator | None,
        *,
        num_samples: int | None = None,
        t_start: int | None = None,
        num_steps: int | None = None,
    ) -> DenoiseOutput:
        """Truncated reverse process from the perturbed prior; K = num_samples candidates per sample."""
        sched = self.config.schedule
        k = self.config.num_samples if num_samples is None else num_samples
        check_positive("num_samples", k)
        t_start = sched.t_start if t_start is None else t_start
        num_steps = sched.num_steps if num_steps is None else num_steps
        x0 = self.normalize(prior_waypoints, prior_route).repeat_interleave(k, dim=0)  # (B*K, Q, 2)
        mem = (memory if k == 1 else memory.repeat_interleave(k)).with_anchor(x0)
        t = torch.full((x0.shape[0],), t_start, dtype=torch.long, device=x0.device)
        x_t = self.noise_model.perturb(x0, t, self.train_scheduler, self.segments, generator)
        x = self.denoise(x_t, mem, t_start, num_steps, generator)
        return self._collect(x, prior_waypoints.shape[0], k)

    def denoise(
        self,
        x_t: torch.Tensor,
        memory: RefinerMemory,
        t_start: int,
        num_steps: int,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """The truncated reverse process from x_t (B, Q, 2) at t_start; memory carries the anchor."""
        set_truncated_timesteps(self.sample_scheduler, t_start, num_steps, device=x_t.device)
        eta = self.config.schedule.eta

        def step(x, x0_hat, t, t_prev):
            return self.noise_model.step(
                x, x0_hat, t, t_prev, self.sample_scheduler, self.segments, generator, eta
            )

        return reverse_process(
            self.sample_scheduler, x_t, lambda x, tt: self.network(x, tt, memory), step=step
        )

    @torch.no_grad()
    def sample_from_noise(
        self,
        memory: RefinerMemory,
        batch_size: int,
        generator: torch.Generator | None,
        *,
        num_steps: int = 50,
    ) -> DenoiseOutput:
        """Classic (untruncated) diffusion from pure noise with `num_steps` scheduler steps (the baseline
        truncation is measured against; only meaningful for a network trained over all timesteps)."""
        scheduler = build_scheduler(self.config.schedule)
        device = self.scale.device
        scheduler.set_timesteps(num_steps, device=device)
        x = torch.randn((batch_size, sum(self.segments), 2), generator=generator, device=device)
        # From pure noise there is no prior: the anchor is the (uninformative) zero plan.
        memory = memory.with_anchor(torch.zeros_like(x))

        def step(x, x0_hat, t, t_prev):
            return scheduler.step(x0_hat, t, x, generator=generator).prev_sample

        x = reverse_process(scheduler, x, lambda x, tt: self.network(x, tt, memory), step=step)
        return self._collect(x, batch_size, 1)

    def _collect(self, x: torch.Tensor, b: int, k: int) -> DenoiseOutput:
        wp, route = self.denormalize(x.reshape(b, k, *x.shape[1:]))
        chosen = select_candidate(wp, route, self.config.selection)
        return DenoiseOutput(waypoints=chosen[0], route=chosen[1], waypoint_samples=wp, route_samples=route)


def select_candidate(
    waypoints: torch.Tensor, route: torch.Tensor, selection: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one plan out of K: waypoints (B, K, Nw, 2), route (B, K, Nr, 2) -> (B, Nw, 2), (B, Nr, 2).

    medoid: the candidate with the smallest summed distance to the others (a consensus that is
    itself a sampled plan); mean: the average; first: candidate 0.
    """
    check_choice("selection", selection, SELECTIONS)
    if selection == "first" or waypoints.shape[1] == 1:
        return waypoints[:, 0], route[:, 0]
    if selection == "mean":
        return waypoints.mean(dim=1), route.mean(dim=1)
    flat = torch.cat([waypoints.flatten(2), route.flatten(2)], dim=-1)  # (B, K, F)
    idx = torch.cdist(flat, flat).sum(dim=-1).argmin(dim=1)  # (B,)
    batch = torch.arange(waypoints.shape[0], device=waypoints.device)
    return waypoints[batch, idx], route[batch, idx]
