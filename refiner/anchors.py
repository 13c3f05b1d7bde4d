"""Multi-modal starting plans for the refiner's candidates (issue 10; beyond the paper).

K independent perturbations of one prior differ only by stretching (the multiplicative factors scale
whole trajectories), so a straight prior never yields a lateral alternative. Mode anchors instead
turn the prior into one starting plan per lateral x longitudinal meta-action:

    lateral       keep | one lane to the left | one lane to the right
    longitudinal  keep | faster | slower

The lateral modes add a smooth lateral offset of `lane_width_m` that builds up over
`lane_change_s` along the waypoints (by time) and over `lane_change_m` along the route (by distance
ahead); the longitudinal modes scale the waypoints (the speed profile) and leave the route (a path)
alone. Anchor 0 is the prior itself. Each candidate is then perturbed and denoised from its own
anchor, and a scorer picks one (see `refiner.denoiser`).

Axes: B batch, M anchors, Nw waypoints, Nr route points.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from automot import spec
from automot.checks import check_positive

LATERAL = ("keep", "left", "right")
LONGITUDINAL = ("keep", "faster", "slower")


@dataclass
class AnchorConfig:
    lane_width_m: float = 4.0
    lane_change_s: float = 3.0
    lane_change_m: float = 40.0
    speed_factor: float = 0.2  # faster = 1 + f, slower = 1 - f

    def __post_init__(self) -> None:
        for name in ("lane_width_m", "lane_change_s", "lane_change_m", "speed_factor"):
            check_positive(f"AnchorConfig.{name}", getattr(self, name))
        if self.speed_factor >= 1:
            raise ValueError(f"AnchorConfig.speed_factor: expected < 1, got {self.speed_factor}")

    @property
    def names(self) -> list[str]:
        return [f"{lat}/{lon}" for lat in LATERAL for lon in LONGITUDINAL]


def _smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def mode_anchors(
    waypoints: torch.Tensor, route: torch.Tensor, config: AnchorConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """waypoints (B, Nw, 2), route (B, Nr, 2) metres -> anchors (B, M, Nw, 2), (B, M, Nr, 2), M = 9,
    in the order of `config.names` (anchor 0 = the input)."""
    nw = waypoints.shape[1]
    times = torch.tensor(spec.waypoint_times_s()[:nw], dtype=waypoints.dtype, device=waypoints.device)
    wp_ramp = _smoothstep(times / config.lane_change_s)  # (Nw,)
    route_ramp = _smoothstep(route[..., 0].clamp_min(0) / config.lane_change_m)  # (B, Nr)
    f = config.speed_factor
    wps, routes = [], []
    for lat in LATERAL:
        side = {"keep": 0.0, "left": 1.0, "right": -1.0}[lat] * config.lane_width_m
        for lon in LONGITUDINAL:
            scale = {"keep": 1.0, "faster": 1.0 + f, "slower": 1.0 - f}[lon]
            wp = waypoints * scale
            wp = torch.stack([wp[..., 0], wp[..., 1] + side * wp_ramp], dim=-1)
            r = torch.stack([route[..., 0], route[..., 1] + side * route_ramp], dim=-1)
            wps.append(wp)
            routes.append(r)
    return torch.stack(wps, dim=1), torch.stack(routes, dim=1)
