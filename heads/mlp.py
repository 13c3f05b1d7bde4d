"""The action expert's coarse decoder (paper section 3.2, eq. 2): the default planning head.

Waypoints come from an MLP over each waypoint query's latent; the route from an MLP over each route
query's latent that predicts the step from the previous route point, followed by a cumulative sum
(as in the public AutoMoT code). Trained with L1, waypoints weighted 3,3,2,2,1,1 by default.

Waypoint parametrisations (`waypoint_mode`): "absolute" (each query outputs its waypoint, in units of
`waypoint_scale`) or "delta" (each query outputs the displacement over its 0.5 s, summed like the route;
every output is then of the same size, a few metres, whatever the horizon). `cv_residual` adds the
constant-velocity plan (speed x t straight ahead, from `ctx.ego_state`) to the output, so the network
predicts only the deviation from keeping the current speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from automot import spec
from automot.checks import check_choice, check_positive
from heads.base import PlanningHead, register_head
from heads.losses import plan_l1_loss, weighted_waypoint_l1  # noqa: F401  (re-exported)
from heads.types import ActionContext, ContextDims, Plan, PlanTarget

WAYPOINT_MODES = ("absolute", "delta")
SPEED = spec.EGO_STATE_FIELDS.index("speed")


@dataclass
class MLPHeadConfig:
    hidden_dim: int = 256
    # Output scales (metres per unit of network output): keep the last layer's outputs near unit size.
    waypoint_scale: tuple[float, float] = (10.0, 2.0)
    route_step_scale: tuple[float, float] = (spec.ROUTE_SPACING_M, 0.5)
    waypoint_weights: tuple[float, ...] = (3.0, 3.0, 2.0, 2.0, 1.0, 1.0)
    waypoint_loss_weight: float = 1.0
    route_loss_weight: float = 1.0
    waypoint_mode: str = "absolute"  # or "delta": per-interval displacements, summed
    cv_residual: bool = False

    def __post_init__(self) -> None:
        check_positive("MLPHeadConfig.hidden_dim", self.hidden_dim)
        check_choice("MLPHeadConfig.waypoint_mode", self.waypoint_mode, WAYPOINT_MODES)
        if min(self.waypoint_weights) < 0 or sum(self.waypoint_weights) <= 0:
            raise ValueError(
                f"MLPHeadConfig.waypoint_weights: expected non-negative with a positive sum, got {self.waypoint_weights}"
            )
        for name in ("waypoint_scale", "route_step_scale"):
            if len(getattr(self, name)) != 2 or min(getattr(self, name)) <= 0:
                raise ValueError(
                    f"MLPHeadConfig.{name}: expected two positive numbers, got {getattr(self, name)}"
                )


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim)
    )


@register_head("mlp")
class MLPHead(PlanningHead):
    """Deterministic waypoint + route decoder over the AE's planning-query latents."""

    def __init__(self, dims: ContextDims, config: MLPHeadConfig | None = None, **kwargs) -> None:
        super().__init__()
        if config is not None and kwargs:
            raise ValueError(
                f"MLPHead: pass either config or keyword overrides, got both (overrides {sorted(kwargs)})"
            )
        self.dims = dims
        self.config = c = config if config is not None else MLPHeadConfig(**kwargs)
        if len(c.waypoint_weights) != dims.num_waypoints:
            raise ValueError(
                f"MLPHeadConfig.waypoint_weights: expected {dims.num_waypoints} weights (one per waypoint), "
                f"got {len(c.waypoint_weights)}"
            )
        self.waypoint_mlp = _mlp(dims.latent_dim, c.hidden_dim, 2)
        self.route_mlp = _mlp(dims.latent_dim, c.hidden_dim, 2)
        self.register_buffer("waypoint_scale", torch.tensor(c.waypoint_scale), persistent=False)
        self.register_buffer("route_step_scale", torch.tensor(c.route_step_scale), persistent=False)
        self.register_buffer("waypoint_weights", torch.tensor(c.waypoint_weights), persistent=False)
        times = spec.WAYPOINT_DT_S * torch.arange(1, dims.num_waypoints + 1, dtype=torch.float32)
        self.register_buffer("waypoint_times", times, persistent=False)

    def forward(self, ctx: ActionContext, *, generator: torch.Generator | None = None) -> Plan:
        """ctx.plan_latents (B, Nw+Nr, D_ae) -> Plan(waypoints (B, Nw, 2), route (B, Nr, 2))."""
        wp_latents, route_latents = ctx.plan_latents.split(
            [self.dims.num_waypoints, self.dims.num_route], dim=1
        )
        waypoints = self.waypoint_mlp(wp_latents) * self.waypoint_scale
        if self.config.waypoint_mode == "delta":
            waypoints = torch.cumsum(waypoints, dim=1)
        if self.config.cv_residual:
            speed = ctx.ego_state[:, SPEED].to(waypoints.dtype)
            waypoints = waypoints + torch.stack(
                (speed[:, None] * self.waypoint_times, torch.zeros_like(waypoints[..., 1])), dim=-1
            )
        route = torch.cumsum(self.route_mlp(route_latents) * self.route_step_scale, dim=1)
        return Plan(waypoints=waypoints, route=route)

    def loss(
        self,
        ctx: ActionContext,
        target: PlanTarget,
        *,
        generator: torch.Generator | None = None,
        sample_weight: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        c = self.config
        target.validate(
            num_waypoints=self.dims.num_waypoints, num_route=self.dims.num_route, batch_size=ctx.batch_size
        )
        plan = self(ctx)
        return plan_l1_loss(
            plan, target, self.waypoint_weights, c.waypoint_loss_weight, c.route_loss_weight, sample_weight
        )
