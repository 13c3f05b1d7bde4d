"""Open-loop collision geometry (nuScenes-style planning collision rate): does the planned ego box overlap an
agent's ground-truth box at each waypoint time? Pure torch, batched, differentiable-free (boolean).

Axes: B batch, Nw waypoints (6), A agents.

The ego box at waypoint k is centred on the waypoint with the ego's (length, width) and the heading of
the path there: the direction from the previous waypoint (the origin for k = 0); when the ego barely
moves (< `min_step_m`) the previous heading is kept (0 = straight ahead at the start). Overlap is
tested by separating axes (two oriented rectangles overlap iff their projections overlap on all four
edge normals); touching boxes (zero-area contact) do not count.
"""

from __future__ import annotations

import torch

from automot.checks import check_tensor


def waypoint_headings(waypoints: torch.Tensor, min_step_m: float = 0.1) -> torch.Tensor:
    """(B, Nw, 2) ego-frame waypoints -> (B, Nw) heading of the path at each waypoint."""
    prev = torch.cat([torch.zeros_like(waypoints[:, :1]), waypoints[:, :-1]], dim=1)
    step = waypoints - prev
    raw = torch.atan2(step[..., 1], step[..., 0])
    moving = step.norm(dim=-1) >= min_step_m
    headings = []
    last = torch.zeros_like(raw[:, 0])
    for k in range(waypoints.shape[1]):
        last = torch.where(moving[:, k], raw[:, k], last)
        headings.append(last)
    return torch.stack(headings, dim=1)


def box_corners(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 5) boxes (x, y, heading, length, width) -> (..., 4, 2) corners, counter-clockwise."""
    x, y, h, length, width = boxes.unbind(-1)
    c, s = torch.cos(h), torch.sin(h)
    fx, fy = c * length / 2, s * length / 2
    lx, ly = -s * width / 2, c * width / 2
    return torch.stack(
        [
            torch.stack([x + fx - lx, y + fy - ly], -1),
            torch.stack([x + fx + lx, y + fy + ly], -1),
            torch.stack([x - fx + lx, y - fy + ly], -1),
            torch.stack([x - fx - lx, y - fy - ly], -1),
        ],
        dim=-2,
    )


def boxes_overlap(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Oriented boxes (..., 5) against (..., 5) (broadcast) -> (...) bool, by separating axes."""
    a, b = torch.broadcast_tensors(a, b)
    ca, cb = box_corners(a), box_corners(b)
    ha, hb = a[..., 2], b[..., 2]
    axes = torch.stack(
        [
            torch.stack([torch.cos(h), torch.sin(h)], -1)
            for h in (ha, ha + torch.pi / 2, hb, hb + torch.pi / 2)
        ],
        dim=-2,
    )  # (..., 4, 2)
    pa = torch.einsum("...ck,...ak->...ac", ca, axes)  # (..., 4 axes, 4 corners)
    pb = torch.einsum("...ck,...ak->...ac", cb, axes)
    separated = (pa.amax(-1) <= pb.amin(-1) + eps) | (pb.amax(-1) <= pa.amin(-1) + eps)
    return ~separated.any(-1)


def plan_collisions(
    waypoints: torch.Tensor, agent_boxes: torch.Tensor, agent_mask: torch.Tensor, ego_size: torch.Tensor
) -> torch.Tensor:
    """Collision of the planned ego box with any valid agent at each waypoint time.

    waypoints (B, Nw, 2), agent_boxes (B, Nw, A, 5), agent_mask (B, Nw, A) bool, ego_size (B, 2) ->
    (B, Nw) bool.
    """
    dims: dict[str, int] = {}
    check_tensor("waypoints", waypoints, ("B", "Nw", 2), dims=dims)
    check_tensor("agent_boxes", agent_boxes, ("B", "Nw", "A", 5), dims=dims)
    check_tensor("agent_mask", agent_mask, ("B", "Nw", "A"), dims=dims, dtype=torch.bool)
    check_tensor("ego_size", ego_size, ("B", 2), dims=dims)
    heading = waypoint_headings(waypoints)
    size = ego_size[:, None, :].expand(-1, waypoints.shape[1], -1).to(waypoints.dtype)
    ego = torch.cat([waypoints, heading[..., None], size], dim=-1)  # (B, Nw, 5)
    hit = boxes_overlap(ego[:, :, None, :], agent_boxes.to(waypoints.dtype))  # (B, Nw, A)
    return (hit & agent_mask).any(-1)
