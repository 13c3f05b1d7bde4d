r"""Noise models of truncated denoising: how a coarse plan is perturbed (forward) and how one reverse
step moves a noisy plan towards the network's estimate of the clean one (paper appendix A.3, eq. 6).

Notation. A plan is a set of trajectories (here: 6 waypoints and 20 route points) concatenated along
the point axis, x \in R^{B x N x 2}, in the ego frame (column 0 = longitudinal/forward, column 1 =
lateral/left) and normalised per axis. `segments` gives the number of points of each trajectory,
e.g. (6, 20). t is a diffusion timestep, \bar\alpha_t the scheduler's cumulative alpha, x0_hat the
network's estimate of the clean plan at a step, and t' < t the next timestep of the truncated grid
(t' = -1: the clean end, \bar\alpha = 1).

Each model owns both directions, because a reverse step is only right for the forward process it
undoes (a diffusers DDIM step after a multiplicative perturbation treats x_t as
sqrt(\bar\alpha_t) x0 + noise, which it is not, and over-corrects).

multiplicative (default; the AutoMoT paper's eq. 6: the AE prior is perturbed multiplicatively as the
forward process)
    sigma_t = max(s * sqrt(1 - \bar\alpha_t), sigma_min)          (sigma_{-1} = 0)
    forward: for every trajectory j of every sample b draw one pair eps_lon, eps_lat ~ N(0, 1) and set
        x_t[b, i, a] = (1 + sigma_t * eps_a[b, j]) * x_0[b, i, a]         for every point i of j,
    so the whole trajectory is stretched or shrunk along and across the direction of travel: the
    origin stays put, a straight-ahead trajectory stays straight, the shape is kept. The factor has
    mean 1 and std sigma_t and is not clipped.
    reverse (DDIM for this process): the implied noise is x_t - x0_hat = x0_hat * sigma_t * eps, so
        x_t' = x0_hat + sqrt(sigma_t'^2 - c^2) / sigma_t * (x_t - x0_hat) + c * x0_hat * eps',
        c = eta * sigma_t' * sqrt(1 - sigma_t'^2 / sigma_t^2),
    with eps' one (lon, lat) pair per trajectory. eta = 0 is deterministic; with an exact x0_hat every
    intermediate sample lies on the forward process's marginal at t', and the last step returns x0_hat.

additive (DiffusionDrive)
    forward: x_t = sqrt(\bar\alpha_t) x_0 + sqrt(1 - \bar\alpha_t) eps, eps ~ N(0, I) (`scheduler.add_noise`);
    reverse: the scheduler's own `step` (DDIM, DDPM, DPM-Solver, Euler; eta as the scheduler defines it).

diffusiondrive_v2 (DiffusionDriveV2, hustvl/DiffusionDriveV2 `diffusiondrivev2_model_rl.py`,
`DDIMScheduler_with_logprob.step`)
    forward: additive, as above (V2 perturbs its anchors with `add_noise`);
    reverse: the DDIM mean mu = sqrt(\bar\alpha_t') x0_hat + sqrt(1 - \bar\alpha_t' - std_t^2) eps_hat,
    std_t = eta * sqrt(DDIM variance), eps_hat = (x_t - sqrt(\bar\alpha_t) x0_hat) / sqrt(1 - \bar\alpha_t);
    then, only when eta > 0, x_t' = mu * (1 + s * [eps_lon, eps_lat]) with s = max(std_t, 0.04) and one
    (lon, lat) pair per trajectory broadcast over its points; the additive term is zero. eta = 0 is plain
    deterministic DDIM. (V2 uses this exploration noise for its RL fine-tuning.)

Every random number comes from the `torch.Generator` passed in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from automot.checks import check_positive, check_tensor
from automot.registry import Registry

NOISE_MODELS: Registry[NoiseModel] = Registry("noise model")


class NoiseModel(ABC):
    """Perturbs clean (normalised) trajectories x0 (B, N, 2) to timestep t (B,), and steps back."""

    # True when `step` delegates to the diffusers scheduler (which then needs its timesteps set).
    uses_scheduler_step: bool = False

    @abstractmethod
    def perturb(
        self,
        x0: torch.Tensor,
        t: torch.Tensor,
        scheduler,
        segments: Sequence[int],
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """x0 (B, N, 2), t (B,) long, a diffusers scheduler, points per trajectory -> x_t (B, N, 2)."""

    @abstractmethod
    def step(
        self,
        x_t: torch.Tensor,
        x0_hat: torch.Tensor,
        t: int,
        t_prev: int,
        scheduler,
        segments: Sequence[int],
        generator: torch.Generator | None,
        eta: float = 0.0,
    ) -> torch.Tensor:
        """One reverse step x_t (B, N, 2) at t -> x_{t'} at t_prev (-1 = clean) given x0_hat (B, N, 2)."""


@dataclass
class MultiplicativeNoise(NoiseModel):
    sigma_scale: float = 1.0
    sigma_min: float = 0.04

    def __post_init__(self) -> None:
        check_positive("MultiplicativeNoise.sigma_scale", self.sigma_scale)
        check_positive("MultiplicativeNoise.sigma_min", self.sigma_min, allow_zero=True)

    def sigma(self, t: torch.Tensor, scheduler) -> torch.Tensor:
        """sigma_t (B,) for timesteps t (B,); t = -1 (the clean end) gives 0."""
        a = _alphas_cumprod(scheduler, "the multiplicative noise model").to(t.device)[t.clamp_min(0)]
        sigma = (self.sigma_scale * (1.0 - a).sqrt()).clamp_min(self.sigma_min)
        return torch.where(t < 0, torch.zeros_like(sigma), sigma)

    def perturb(self, x0, t, scheduler, segments, generator):
        _check_inputs(x0, t, segments)
        f = 1.0 + self.sigma(t, scheduler).to(x0.dtype)[:, None, None] * _trajectory_eps(
            x0, segments, generator
        )
        return x0 * f

    def step(self, x_t, x0_hat, t, t_prev, scheduler, segments, generator, eta=0.0):
        dev = x_t.device
        s_t = float(self.sigma(torch.tensor([t], device=dev), scheduler)[0])
        s_prev = float(self.sigma(torch.tensor([t_prev], device=dev), scheduler)[0])
        c = eta * s_prev * max(0.0, 1.0 - s_prev**2 / s_t**2) ** 0.5
        out = x0_hat + (max(0.0, s_prev**2 - c**2) ** 0.5 / s_t) * (x_t - x0_hat)
        if c > 0:
            out = out + c * x0_hat * _trajectory_eps(x0_hat, segments, generator)
        return out


@dataclass
class AdditiveNoise(NoiseModel):
    uses_scheduler_step = True

    def perturb(self, x0, t, scheduler, segments, generator):
        _check_inputs(x0, t, segments)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        return scheduler.add_noise(x0, eps, t)

    def step(self, x_t, x0_hat, t, t_prev, scheduler, segments, generator, eta=0.0):
        kwargs = {"generator": generator}
        if "eta" in _step_parameters(scheduler):
            kwargs["eta"] = eta
        # Some schedulers (Euler) insist on the element of their own `timesteps`, not an int.
        timestep = scheduler.timesteps[(scheduler.timesteps == t).nonzero()[0, 0]]
        return scheduler.step(x0_hat, timestep, x_t, **kwargs).prev_sample


@dataclass
class DiffusionDriveV2Noise(AdditiveNoise):
    """Additive forward perturbation; DDIM reverse steps whose exploration noise is multiplicative."""

    uses_scheduler_step = False
    min_std: float = 0.04

    def __post_init__(self) -> None:
        check_positive("DiffusionDriveV2Noise.min_std", self.min_std, allow_zero=True)

    def step(self, x_t, x0_hat, t, t_prev, scheduler, segments, generator, eta=0.0):
        ac = _alphas_cumprod(scheduler, "the diffusiondrive_v2 noise model").to(x_t.device, x_t.dtype)
        a_t = ac[t]
        a_prev = ac[t_prev] if t_prev >= 0 else torch.ones((), dtype=x_t.dtype, device=x_t.device)
        eps_hat = (x_t - a_t.sqrt() * x0_hat) / (1 - a_t).sqrt()
        variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
        std = eta * variance.sqrt()
        mean = a_prev.sqrt() * x0_hat + (1 - a_prev - std**2).clamp_min(0).sqrt() * eps_hat
        if eta <= 0:
            return mean
        s = std.clamp_min(self.min_std)
        return mean * (1.0 + s * _trajectory_eps(x_t, segments, generator))


NOISE_MODELS.register("multiplicative")(MultiplicativeNoise)
NOISE_MODELS.register("additive")(AdditiveNoise)
NOISE_MODELS.register("diffusiondrive_v2")(DiffusionDriveV2Noise)


def build_noise_model(name: str, **config) -> NoiseModel:
    return NOISE_MODELS.build(name, **config)


def available_noise_models() -> list[str]:
    return NOISE_MODELS.names()


def _trajectory_eps(x: torch.Tensor, segments: Sequence[int], generator) -> torch.Tensor:
    """One standard-normal (lon, lat) pair per trajectory, broadcast over its points: (B, N, 2)."""
    eps = torch.randn((x.shape[0], len(segments), 2), generator=generator, dtype=x.dtype, device=x.device)
    return eps[:, _segment_index(segments, x.device), :]


def _segment_index(segments: Sequence[int], device) -> torch.Tensor:
    return torch.repeat_interleave(
        torch.arange(len(segments), device=device), torch.tensor(list(segments), device=device)
    )


def _alphas_cumprod(scheduler, who: str) -> torch.Tensor:
    alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
    if alphas_cumprod is None:
        raise ValueError(
            f"scheduler: {who} needs a scheduler with alphas_cumprod (DDIM, DDPM, ...), got {type(scheduler).__name__}"
        )
    return alphas_cumprod


def _step_parameters(scheduler) -> set[str]:
    import inspect

    return set(inspect.signature(scheduler.step).parameters)


def _check_inputs(x0: torch.Tensor, t: torch.Tensor, segments: Sequence[int]) -> None:
    dims: dict[str, int] = {}
    check_tensor("x0", x0, ("B", sum(segments), 2), dims=dims)
    check_tensor("t", t, ("B",), dims=dims)
