"""Open-loop planning metrics as pure functions (the torchmetrics classes in `training.metrics` wrap them).

L2 at a horizon t (1 s, 2 s, 3 s) between planned and expert waypoints (B, Nw, 2) sampled every
`spec.WAYPOINT_DT_S`, under the two protocols in use:

    uniad: the displacement at t only:          L2(t) = mean_b || p_b(t) - g_b(t) ||
    stp3:  the mean displacement up to t:       L2(t) = mean_b mean_{i: t_i <= t} || p_b(t_i) - g_b(t_i) ||

"avg" is the mean over the horizons. ST-P3 numbers are smaller than UniAD numbers for the same plan
(early points have small errors); say which one you report.
"""

from __future__ import annotations

import torch

from automot import spec
from automot.checks import check_choice, check_tensor

PROTOCOLS = ("stp3", "uniad")


def horizon_indices(horizons_s=spec.DECISION_HORIZONS_S) -> list[int]:
    return [spec.horizon_waypoint_index(h) for h in horizons_s]


def l2_per_horizon(
    pred: torch.Tensor, target: torch.Tensor, protocol: str = "stp3", horizons_s=spec.DECISION_HORIZONS_S
) -> torch.Tensor:
    """pred, target (B, Nw, 2) -> per-sample L2 at each horizon (B, len(horizons_s)), metres."""
    check_choice("protocol", protocol, PROTOCOLS)
    dims: dict[str, int] = {}
    check_tensor("pred", pred, ("B", "Nw", 2), dims=dims)
    check_tensor("target", target, ("B", "Nw", 2), dims=dims)
    dist = (pred - target).norm(dim=-1)  # (B, Nw)
    cols = []
    for idx in horizon_indices(horizons_s):
        cols.append(dist[:, idx] if protocol == "uniad" else dist[:, : idx + 1].mean(dim=1))
    return torch.stack(cols, dim=1)


def l2_summary(pred: torch.Tensor, target: torch.Tensor, protocol: str = "stp3") -> dict[str, float]:
    """{'l2_1s', 'l2_2s', 'l2_3s', 'l2_avg'} averaged over the batch."""
    per = l2_per_horizon(pred, target, protocol).mean(dim=0)
    out = {f"l2_{int(h)}s": float(v) for h, v in zip(spec.DECISION_HORIZONS_S, per)}
    out["l2_avg"] = float(per.mean())
    return out


def collision_per_horizon(
    collided: torch.Tensor, protocol: str = "stp3", horizons_s=spec.DECISION_HORIZONS_S
) -> torch.Tensor:
    """collided (B, Nw) bool, one entry per waypoint time -> (B, len(horizons_s)) float in [0, 1].

    uniad: the collision indicator at t; stp3: the share of waypoint times up to t in collision
    (the per-step collision rate averaged up to t, as in ST-P3's evaluation).
    """
    check_choice("protocol", protocol, PROTOCOLS)
    check_tensor("collided", collided, (None, None), dtype=torch.bool)
    c = collided.float()
    cols = [
        c[:, idx] if protocol == "uniad" else c[:, : idx + 1].mean(dim=1)
        for idx in horizon_indices(horizons_s)
    ]
    return torch.stack(cols, dim=1)


def decision_correct(
    lateral_logits: torch.Tensor | None,
    longitudinal_logits: torch.Tensor,
    lateral_target: torch.Tensor | None,
    longitudinal_target: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Per-sample, per-horizon correctness (B, K) bool for 'longitudinal' and, when lateral logits
    are given, 'lateral' and 'joint' (both right). Logits (B, K, C), targets (B, K) class indices."""
    dims: dict[str, int] = {}
    check_tensor("longitudinal_logits", longitudinal_logits, ("B", "K", None), dims=dims)
    check_tensor("longitudinal_target", longitudinal_target, ("B", "K"), dims=dims)
    out = {"longitudinal": longitudinal_logits.argmax(-1) == longitudinal_target}
    if lateral_logits is not None:
        if lateral_target is None:
            raise ValueError(
                "lateral_target: expected (B, K) class indices when lateral_logits are given, got None"
            )
        check_tensor("lateral_logits", lateral_logits, ("B", "K", None), dims=dims)
        check_tensor("lateral_target", lateral_target, ("B", "K"), dims=dims)
        out["lateral"] = lateral_logits.argmax(-1) == lateral_target
        out["joint"] = out["lateral"] & out["longitudinal"]
    return out
