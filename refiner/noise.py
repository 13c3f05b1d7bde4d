r"""Noise models that perturb a coarse trajectory before truncated denoising (paper appendix A.3, eq. 6).

Notation. A plan is a set of trajectories (here: 6 waypoints and 20 route points) concatenated along
the point axis, x \in R^{B x N x 2}, in the ego frame (column 0 = longitudinal/forward, column 1 =
lateral/left) and normalised per axis. `segments` gives the number of points of each trajectory,
e.g. (6, 20). t is a diffusion timestep and \bar\alpha_t the scheduler's cumulative alpha.

multiplicative (default; DiffusionDriveV2-style)
    sigma_t = max(s * sqrt(1 - \bar\alpha_t), sigma_min)
    for every trajectory j of every sample b, draw one pair eps_lon, eps_lat ~ N(0, 1) and set
        x_t[b, i, 0] = (1 + sigma_t * eps_lon[b, j]) * x_0[b, i, 0]
        x_t[b, i, 1] = (1 + sigma_t * eps_lat[b, j]) * x_0[b, i, 1]      for every point i of j.
    The factors are broadcast over the points, so the perturbation stretches or shrinks the whole
    trajectory along and across the direction of travel: the origin stays put, a straight-ahead
    trajectory stays straight (its lateral column is scaled, 0 stays 0), and the shape is kept.
    The additive term is zero. The factor has mean 1 and standard deviation sigma_t; it is not
    clipped, so a factor below zero (probability Phi(-1/sigma_t), about 1e-7 at sigma_t = 0.19)
    would mirror a trajectory; we leave that to the numbers rather than hide it.

additive (DiffusionDrive-style)
    x_t = sqrt(\bar\alpha_t) * x_0 + sqrt(1 - \bar\alpha_t) * eps,   eps ~ N(0, I)
    exactly the scheduler's forward process (`scheduler.add_noise`).

Both draw every random number from the `torch.Generator` passed in.
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
    """Perturbs clean (normalised) trajectories x0 (B, N, 2) to timestep t (B,)."""

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


@dataclass
class MultiplicativeNoise(NoiseModel):
    sigma_scale: float = 1.0
    sigma_min: float = 0.04

    def __post_init__(self) -> None:
        check_positive("MultiplicativeNoise.sigma_scale", self.sigma_scale)
        check_positive("MultiplicativeNoise.sigma_min", self.sigma_min, allow_zero=True)

    def sigma(self, t: torch.Tensor, scheduler) -> torch.Tensor:
        """sigma_t (B,) for timesteps t (B,)."""
        alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
        if alphas_cumprod is None:
            raise ValueError(
                f"scheduler: the multiplicative noise model needs a scheduler with alphas_cumprod (DDIM, DDPM, ...), "
                f"got {type(scheduler).__name__}"
            )
        a = alphas_cumprod.to(t.device)[t]
        return (self.sigma_scale * (1.0 - a).sqrt()).clamp_min(self.sigma_min)

    def factors(
        self, t: torch.Tensor, scheduler, num_segments: int, generator, dtype, device
    ) -> torch.Tensor:
        """Per-trajectory (longitudinal, lateral) factors 1 + sigma_t * eps: (B, num_segments, 2)."""
        eps = torch.randn((t.shape[0], num_segments, 2), generator=generator, dtype=dtype, device=device)
        return 1.0 + self.sigma(t, scheduler).to(dtype)[:, None, None] * eps

    def perturb(self, x0, t, scheduler, segments, generator):
        _check_inputs(x0, t, segments)
        f = self.factors(t, scheduler, len(segments), generator, x0.dtype, x0.device)
        index = _segment_index(segments, x0.device)
        return x0 * f[:, index, :]


@dataclass
class AdditiveNoise(NoiseModel):
    def perturb(self, x0, t, scheduler, segments, generator):
        _check_inputs(x0, t, segments)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        return scheduler.add_noise(x0, eps, t)


NOISE_MODELS.register("multiplicative")(MultiplicativeNoise)
NOISE_MODELS.register("additive")(AdditiveNoise)


def build_noise_model(name: str, **config) -> NoiseModel:
    return NOISE_MODELS.build(name, **config)


def available_noise_models() -> list[str]:
    return NOISE_MODELS.names()


def _segment_index(segments: Sequence[int], device) -> torch.Tensor:
    return torch.repeat_interleave(
        torch.arange(len(segments), device=device), torch.tensor(list(segments), device=device)
    )


def _check_inputs(x0: torch.Tensor, t: torch.Tensor, segments: Sequence[int]) -> None:
    dims: dict[str, int] = {}
    check_tensor("x0", x0, ("B", sum(segments), 2), dims=dims)
    check_tensor("t", t, ("B",), dims=dims)
