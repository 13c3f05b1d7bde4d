"""A plug-in planning head: the constant-velocity plan plus a learned residual.

This module is the example of the head contract (`heads.base`): it lives outside the library,
registers itself on import, and then works everywhere a built-in head does:

    automot fit --import examples.cv_residual_head --config configs/tiny/refiner.yaml \
        --model.init_args.head=cv_residual --model.init_args.export_dir=runs/tiny/policy_cv_residual
    automot eval --import examples.cv_residual_head --ckpt runs/tiny/policy_cv_residual --data data/tiny
    automot study --import examples.cv_residual_head --config my_study.yaml   # heads: [{name: mlp}, {name: cv_residual}]

(`automot eval` finds the module by itself when it is importable: the policy folder records it.) An
installed package registers its heads for every command through the entry-point group instead:

    [project.entry-points."automot.plugins"]
    cv_residual = "examples.cv_residual_head"

The head: waypoints = (v t, 0) for t = 0.5 ... 3 s with v the ego speed, route = (2 m, 4 m, ...) straight
ahead, each plus a residual an MLP predicts from the query's latent and the ego state. The last
layer starts at zero, so the untrained head is exactly the constant-velocity planner, and training
only has to learn the correction. Loss: `heads.plan_l1_loss`, the library's trajectory L1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from automot import spec
from automot.config import build_config
from heads import ActionContext, ContextDims, Plan, PlanningHead, PlanTarget, plan_l1_loss, register_head


@dataclass
class CVResidualConfig:
    hidden_dim: int = 64
    waypoint_scale: tuple[float, float] = (2.0, 1.0)  # metres per unit of residual output
    route_step_scale: tuple[float, float] = (0.5, 0.5)
    waypoint_weights: tuple[float, ...] | None = None  # None: uniform

    def __post_init__(self) -> None:
        if self.hidden_dim < 1:
            raise ValueError(f"CVResidualConfig.hidden_dim: expected an int >= 1, got {self.hidden_dim}")
        for name in ("waypoint_scale", "route_step_scale"):
            value = tuple(getattr(self, name))
            if len(value) != 2 or min(value) <= 0:
                raise ValueError(f"CVResidualConfig.{name}: expected two positive numbers, got {value}")


@register_head("cv_residual")
class ConstantVelocityResidualHead(PlanningHead):
    """Deterministic: constant velocity + residual from (query latent, ego state)."""

    def __init__(self, dims: ContextDims, config: CVResidualConfig | dict | None = None, **overrides) -> None:
        super().__init__()
        self.dims = dims
        self.config = c = build_config(CVResidualConfig, config, **overrides)
        weights = c.waypoint_weights or (1.0,) * dims.num_waypoints
        if len(weights) != dims.num_waypoints:
            raise ValueError(
                f"CVResidualConfig.waypoint_weights: expected {dims.num_waypoints} weights, got {len(weights)}"
            )
        width = dims.latent_dim + dims.ego_state_dim
        self.residual = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, c.hidden_dim), nn.GELU(), nn.Linear(c.hidden_dim, 2)
        )
        nn.init.zeros_(self.residual[-1].weight)
        nn.init.zeros_(self.residual[-1].bias)
        times = spec.WAYPOINT_DT_S * torch.arange(1, dims.num_waypoints + 1, dtype=torch.float32)
        arc = spec.ROUTE_SPACING_M * torch.arange(1, dims.num_route + 1, dtype=torch.float32)
        self.register_buffer("times", times, persistent=False)
        self.register_buffer("arc", arc, persistent=False)
        self.register_buffer("waypoint_scale", torch.tensor(c.waypoint_scale), persistent=False)
        self.register_buffer("route_step_scale", torch.tensor(c.route_step_scale), persistent=False)
        self.register_buffer("waypoint_weights", torch.tensor(weights, dtype=torch.float32), persistent=False)
        self.speed_index = (
            spec.EGO_STATE_FIELDS.index("speed") if dims.ego_state_dim == spec.EGO_STATE_DIM else 0
        )

    def constant_velocity(self, ctx: ActionContext) -> Plan:
        """waypoints (B, Nw, 2) = (v t, 0); route (B, Nr, 2) = (2 m i, 0)."""
        speed = ctx.ego_state[:, self.speed_index : self.speed_index + 1]  # (B, 1)
        along = speed * self.times  # (B, Nw)
        waypoints = torch.stack([along, torch.zeros_like(along)], dim=-1)
        route = torch.stack([self.arc, torch.zeros_like(self.arc)], dim=-1).expand(ctx.batch_size, -1, -1)
        return Plan(waypoints=waypoints, route=route)

    def forward(self, ctx: ActionContext, *, generator: torch.Generator | None = None) -> Plan:
        """ctx.plan_latents (B, Nw + Nr, D_ae), ego_state (B, D_s) -> Plan (B, Nw, 2), (B, Nr, 2)."""
        base = self.constant_velocity(ctx)
        q = ctx.plan_latents.shape[1]
        ego = ctx.ego_state[:, None, :].expand(-1, q, -1)
        delta = self.residual(torch.cat([ctx.plan_latents, ego], dim=-1))  # (B, Q, 2)
        wp_delta, route_delta = delta.split([self.dims.num_waypoints, self.dims.num_route], dim=1)
        waypoints = base.waypoints + wp_delta * self.waypoint_scale
        route = base.route + torch.cumsum(route_delta * self.route_step_scale, dim=1)
        return Plan(waypoints=waypoints, route=route)

    def loss(
        self, ctx: ActionContext, target: PlanTarget, *, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        target.validate(
            num_waypoints=self.dims.num_waypoints, num_route=self.dims.num_route, batch_size=ctx.batch_size
        )
        return plan_l1_loss(self(ctx), target, self.waypoint_weights)
