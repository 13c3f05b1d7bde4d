"""Choosing one plan out of K refined candidates.

    first   candidate 0 (with mode anchors: the one started from the prior itself)
    mean    the average plan (not itself a sample)
    medoid  the candidate with the smallest summed distance to the others: a consensus that is a sample
    scorer  the candidate with the lowest predicted cost, pred_L1 + collision_weight * P(collision), from
            the refiner's own score head (see `refiner.model`); needs scores

Axes: B batch, K candidates, Nw waypoints, Nr route points.
"""

from __future__ import annotations

import torch

from automot.checks import check_choice

SELECTIONS = ("medoid", "mean", "first", "scorer")


def predicted_cost(scores: torch.Tensor, collision_weight: float) -> torch.Tensor:
    """scores (..., 2) = (predicted L1, collision logit) -> (...) cost to minimise."""
    return scores[..., 0] + collision_weight * torch.sigmoid(scores[..., 1])


def select_candidate(
    waypoints: torch.Tensor,
    route: torch.Tensor,
    selection: str,
    scores: torch.Tensor | None = None,
    *,
    collision_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one plan out of K: waypoints (B, K, Nw, 2), route (B, K, Nr, 2), scores (B, K, 2) or None
    -> (B, Nw, 2), (B, Nr, 2)."""
    check_choice("selection", selection, SELECTIONS)
    if selection == "first" or waypoints.shape[1] == 1:
        return waypoints[:, 0], route[:, 0]
    if selection == "mean":
        return waypoints.mean(dim=1), route.mean(dim=1)
    if selection == "scorer":
        if scores is None:
            raise ValueError(
                "selection: 'scorer' needs a refiner built with a score head (RefinerConfig.scorer=True)"
            )
        idx = predicted_cost(scores, collision_weight).argmin(dim=1)
    else:
        flat = torch.cat([waypoints.flatten(2), route.flatten(2)], dim=-1)  # (B, K, F)
        idx = torch.cdist(flat, flat).sum(dim=-1).argmin(dim=1)  # (B,)
    batch = torch.arange(waypoints.shape[0], device=waypoints.device)
    return waypoints[batch, idx], route[batch, idx]
