"""Truncated denoising of a coarse plan (paper appendix A.3; DiffusionDrive's truncation).

Training: the prior plan x_prior (the AE's coarse trajectories) is normalised, perturbed by the noise
model at t ~ U{0, ..., train_t_max - 1}, and the network predicts x0 given the perturbed sample and
the clean prior (its anchor); the head takes an L1 loss against the expert trajectory. With
`train_unroll=n > 1` (default 2, the sampler's default step count) the network is instead run along
the sampler's own n-step chain from a random start (the sample between steps detached) and every
step's x0 estimate is scored, so it learns on the partly corrected samples it meets at inference.
With `train_mode_prob > 0` a sample starts from a random mode anchor (see `refiner.anchors`) instead
of the prior; its x0 estimate is then regressed onto the expert only when that anchor is the mode
nearest to the expert plan (the others teach the score head what a poor candidate looks like).

Inference: the prior is perturbed to `t_start` and `num_steps` reverse steps of the noise model run
(see `refiner.noise`, `refiner.schedule`); the network predicts x0 (diffusers prediction_type
"sample"). `num_samples=K` returns K candidates and one chosen plan (`refiner.selection`): K
independent perturbations of the prior (`candidates="perturb"`), or one per mode anchor
(`candidates="modes"`, K <= 9, anchor 0 = the prior).

Axes: B batch, K candidates, M mode anchors, Nw waypoints, Nr route points, Q = Nw + Nr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from automot.checks import check_choice, check_positive
from refiner.anchors import AnchorConfig, mode_anchors
from refiner.model import RefinerMemory, TrajectoryRefiner
from refiner.noise import NOISE_MODELS, build_noise_model
from refiner.schedule import (
    ScheduleConfig,
    build_scheduler,
    reverse_process,
    set_truncated_timesteps,
    truncated_timesteps,
)
from refiner.selection import SELECTIONS, select_candidate

CANDIDATES = ("perturb", "modes")


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
    candidates: str = "perturb"
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    # Weight of the predicted collision probability in the scorer's cost (normalised-L1 units).
    collision_weight: float = 1.0
    # Training along the sampler's chain: n network evaluations on the n-step chain from one start
    # (default 2, the sampler's default step count); 1 = one perturbed prior at one t per sample.
    train_unroll: int = 2
    # Share of training samples started from a random mode anchor instead of the prior.
    train_mode_prob: float = 0.0

    def __post_init__(self) -> None:
        check_choice("DenoiserConfig.noise", self.noise, NOISE_MODELS.names())
        build_noise_model(self.noise, **self.noise_kwargs)  # validates the kwargs early
        for name in ("waypoint_scale", "route_scale"):
            value = tuple(getattr(self, name))
            if len(value) != 2 or min(value) <= 0:
                raise ValueError(f"DenoiserConfig.{name}: expected two positive numbers, got {value}")
        check_positive("DenoiserConfig.num_samples", self.num_samples)
        check_positive("DenoiserConfig.train_unroll", self.train_unroll)
        check_positive("DenoiserConfig.collision_weight", self.collision_weight, allow_zero=True)
        check_choice("DenoiserConfig.selection", self.selection, SELECTIONS)
        check_choice("DenoiserConfig.candidates", self.candidates, CANDIDATES)
        if not 0.0 <= self.train_mode_prob <= 1.0:
            raise ValueError(
                f"DenoiserConfig.train_mode_prob: expected a probability in [0, 1], got {self.train_mode_prob}"
            )
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
    scores: torch.Tensor | None = None  # (B, K, 2) the score head's (predicted L1, collision logit)


@dataclass
class TrainingEstimates:
    """What one training pass produced.

    estimates:         one (waypoints (B, Nw, 2), route (B, Nr, 2)) x0 estimate in metres per network
                       evaluation (one, or `train_unroll` along the chain).
    regression_weight: (B,) 1 where the estimate is to be regressed onto the expert, 0 where it started
                       from a mode anchor that is not the one nearest to the expert.
    score:             (B, 2) the score head's prediction for the last estimate, or None.
    """

    estimates: list[tuple[torch.Tensor, torch.Tensor]]
    regression_weight: torch.Tensor
    score: torch.Tensor | None


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
        """(..., Nw, 2), (..., Nr, 2) metres -> (..., Q, 2) normalised."""
        return torch.cat([waypoints, route], dim=-2) / self.scale

    def denormalize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., Q, 2) normalised -> waypoints (..., Nw, 2), route (..., Nr, 2) in metres."""
        return (x * self.scale).split(list(self.segments), dim=-2)

    def anchors(self, prior_waypoints: torch.Tensor, prior_route: torch.Tensor) -> torch.Tensor:
        """The mode anchors of a prior, normalised: (B, M, Q, 2), anchor 0 = the prior."""
        wp, route = mode_anchors(prior_waypoints, prior_route, self.config.anchors)
        return self.normalize(wp, route)

    # -- training ---------------------------------------------------------------------------------
    def training_prediction(
        self,
        prior_waypoints: torch.Tensor,
        prior_route: torch.Tensor,
        memory: RefinerMemory,
        generator: torch.Generator | None = None,
        *,
        target_waypoints: torch.Tensor | None = None,
        target_route: torch.Tensor | None = None,
    ) -> TrainingEstimates:
        """Perturb the prior (or a mode anchor) and predict x0; see `TrainingEstimates`. The target is
        needed only with train_mode_prob > 0 (to find the mode nearest to the expert)."""
        x0 = self.normalize(prior_waypoints, prior_route)
        b, device = x0.shape[0], x0.device
        weight = torch.ones(b, device=device)
        if self.config.train_mode_prob > 0:
            x0, weight = self._mode_starts(
                x0, prior_waypoints, prior_route, target_waypoints, target_route, generator
            )
        memory = memory.with_anchor(x0)
        n, t_max = self.config.train_unroll, self.config.schedule.train_t_max
        if n == 1:
            t = torch.randint(0, t_max, (b,), generator=generator, device=device)
            x_t = self.noise_model.perturb(x0, t, self.train_scheduler, self.segments, generator)
            x0_hat, score = self.network.forward_with_score(x_t, t, memory)
            return TrainingEstimates([self.denormalize(x0_hat)], weight, score)
        # One start per batch on a trailing grid (t_start + 1 a multiple of n; the sampler can replay it
        # with any scheduler that takes custom timesteps, with DDIM when the stride divides T).
        starts = torch.arange(n - 1, t_max, n)
        t_start = int(starts[torch.randint(0, len(starts), (1,), generator=generator)])
        grid = truncated_timesteps(
            t_start, n, self.config.schedule.num_train_timesteps, needs_uniform_grid=False
        )
        x = self.noise_model.perturb(
            x0, torch.full((b,), t_start, device=device), self.train_scheduler, self.segments, generator
        )
        estimates, score = [], None
        for i, step_t in enumerate(grid):
            x0_hat, score = self.network.forward_with_score(
                x, torch.full((b,), step_t, device=device), memory
            )
            estimates.append(self.denormalize(x0_hat))
            t_prev = grid[i + 1] if i + 1 < len(grid) else -1
            x = self.noise_model.step(
                x, x0_hat.detach(), step_t, t_prev, self.train_scheduler, self.segments, generator
            ).detach()
        return TrainingEstimates(estimates, weight, score)

    def _mode_starts(self, x0, prior_wp, prior_route, target_wp, target_route, generator):
        if target_wp is None or target_route is None:
            raise ValueError(
                "target_waypoints/target_route: expected tensors when train_mode_prob > 0, got None"
            )
        anchors = self.anchors(prior_wp, prior_route)  # (B, M, Q, 2)
        b, m = anchors.shape[:2]
        target = self.normalize(target_wp, target_route)
        nearest = (anchors - target[:, None]).abs().mean((-1, -2)).argmin(dim=1)  # (B,)
        use_mode = torch.rand(b, generator=generator, device=x0.device) < self.config.train_mode_prob
        pick = torch.randint(0, m, (b,), generator=generator, device=x0.device)
        index = torch.where(use_mode, pick, torch.zeros_like(pick))
        starts = anchors[torch.arange(b, device=x0.device), index]
        weight = ((index == 0) | (index == nearest)).to(x0.dtype)
        return starts, weight

    # -- inference --------------------------------------------------------------------------------
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
        """Truncated reverse process from the perturbed prior (or its mode anchors); K = num_samples."""
        sched = self.config.schedule
        k = self.config.num_samples if num_samples is None else num_samples
        check_positive("num_samples", k)
        t_start = sched.t_start if t_start is None else t_start
        num_steps = sched.num_steps if num_steps is None else num_steps
        b = prior_waypoints.shape[0]
        if self.config.candidates == "modes" and k > 1:
            anchors = self.anchors(prior_waypoints, prior_route)
            if k > anchors.shape[1]:
                raise ValueError(
                    f"num_samples: expected at most {anchors.shape[1]} candidates with candidates='modes', got {k}"
                )
            x0 = anchors[:, :k].reshape(b * k, *anchors.shape[2:])
        else:
            x0 = self.normalize(prior_waypoints, prior_route).repeat_interleave(k, dim=0)  # (B*K, Q, 2)
        mem = (memory if k == 1 else memory.repeat_interleave(k)).with_anchor(x0)
        t = torch.full((x0.shape[0],), t_start, dtype=torch.long, device=x0.device)
        x_t = self.noise_model.perturb(x0, t, self.train_scheduler, self.segments, generator)
        x, scores = self.denoise(x_t, mem, t_start, num_steps, generator)
        return self._collect(x, b, k, scores)

    def denoise(
        self,
        x_t: torch.Tensor,
        memory: RefinerMemory,
        t_start: int,
        num_steps: int,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The truncated reverse process from x_t (B, Q, 2) at t_start (memory carries the anchor)
        -> (x (B, Q, 2), the score head's output for the last step's estimate (B, 2) or None)."""
        set_truncated_timesteps(self.sample_scheduler, t_start, num_steps, device=x_t.device)
        eta = self.config.schedule.eta
        last_score: list[torch.Tensor | None] = [None]

        def predict(x, tt):
            x0_hat, last_score[0] = self.network.forward_with_score(x, tt, memory)
            return x0_hat

        def step(x, x0_hat, t, t_prev):
            return self.noise_model.step(
                x, x0_hat, t, t_prev, self.sample_scheduler, self.segments, generator, eta
            )

        x = reverse_process(self.sample_scheduler, x_t, predict, step=step)
        return x, last_score[0]

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
        return self._collect(x, batch_size, 1, None)

    def _collect(self, x: torch.Tensor, b: int, k: int, scores: torch.Tensor | None) -> DenoiseOutput:
        wp, route = self.denormalize(x.reshape(b, k, *x.shape[1:]))
        scores = None if scores is None else scores.reshape(b, k, -1)
        chosen = select_candidate(
            wp, route, self.config.selection, scores, collision_weight=self.config.collision_weight
        )
        return DenoiseOutput(
            waypoints=chosen[0], route=chosen[1], waypoint_samples=wp, route_samples=route, scores=scores
        )
