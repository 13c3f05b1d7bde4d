"""Trajectory losses a head author needs: the weighted waypoint L1 and the plan L1 of eq. 2 / eq. 9.

Axes: B batch, Nw waypoints, Nr route points.
"""

from __future__ import annotations

import torch

from heads.types import Plan, PlanTarget


def weighted_waypoint_l1(
    pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, sample_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """L1 over (B, Nw, 2) with per-waypoint weights (Nw,), normalised so equal errors give the plain L1;
    `sample_weight` (B,) weights the batch mean (None: all 1)."""
    per_sample = ((pred - target).abs().mean(dim=-1) * weights).sum(dim=-1) / weights.sum()  # (B,)
    return _batch_mean(per_sample, sample_weight)


def _batch_mean(values: torch.Tensor, sample_weight: torch.Tensor | None) -> torch.Tensor:
    if sample_weight is None:
        return values.mean()
    return (values * sample_weight).sum() / sample_weight.sum().clamp_min(1.0)


def plan_l1_loss(
    plan: Plan,
    target: PlanTarget,
    waypoint_weights: torch.Tensor,
    waypoint_loss_weight: float = 1.0,
    route_loss_weight: float = 1.0,
    sample_weight: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The trajectory L1 of eq. 2 / eq. 9: weighted waypoint L1 + route L1.

    plan.waypoints (B, Nw, 2) vs target.waypoints, weighted per waypoint by `waypoint_weights` (Nw,)
    (the MLP head uses 3, 3, 2, 2, 1, 1); plan.route (B, Nr, 2) vs target.route, plain L1;
    `sample_weight` (B,) weights the batch mean (None: every sample 1).
    Returns {"loss", "waypoint_l1", "route_l1"}.
    """
    wp = weighted_waypoint_l1(
        plan.waypoints, target.waypoints, waypoint_weights.to(plan.waypoints), sample_weight
    )
    route = _batch_mean((plan.route - target.route).abs().mean(dim=(-1, -2)), sample_weight)
    return {
        "loss": waypoint_loss_weight * wp + route_loss_weight * route,
        "waypoint_l1": wp,
        "route_l1": route,
    }
