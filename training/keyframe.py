"""Keyframe weighting of the trajectory loss: the samples where the expert changes speed count more.

Most driving samples are cruising: the expert's plan keeps the speed the car has, and a network that
copies its own speed into the plan fits them all (the copycat problem; Wen et al. 2020, "Fighting
Copycat Agents in Behavioral Cloning from Observation Histories", and their keyframe-focused
imitation, Wen et al. 2021, which up-weights the samples where the expert's action changes). The
few samples where the expert slows down to yield or starts off again are the ones that carry the
scene's information, and they are where a copycat policy fails in closed loop.

    w_i = 1 + keyframe_weight * |v_plan_i - v_i|

v_i is the current speed (m/s, the sample's unperturbed ego state), v_plan_i the label plan's mean
speed over its first second (its path length to the 1 s waypoint over 1 s, as `driving.shadow`
measures a plan's speed change). The weights multiply each sample's trajectory loss
(`heads.plan_l1_loss` normalises by their sum, so only their ratios matter); keyframe_weight = 0
gives every sample weight 1.

Axes: B batch, Nw waypoints.
"""

from __future__ import annotations

import torch

from automot import spec
from automot.checks import check_tensor
from training.augment import SPEED

ONE_SECOND = spec.horizon_waypoint_index(1.0)


def plan_speed_change(speed: torch.Tensor, waypoints: torch.Tensor) -> torch.Tensor:
    """The plan's mean speed over its first second minus the current speed (B,), m/s.

    speed (B,) m/s, waypoints (B, Nw, 2) in the ego frame (metres; the ego at the origin)."""
    dims: dict[str, int] = {}
    check_tensor("speed", speed, ("B",), dims=dims)
    check_tensor("waypoints", waypoints, ("B", None, 2), dims=dims)
    points = torch.cat([waypoints.new_zeros(waypoints.shape[0], 1, 2), waypoints[:, : ONE_SECOND + 1]], 1)
    path = (points[:, 1:] - points[:, :-1]).norm(dim=-1).sum(-1)  # (B,)
    return path / spec.waypoint_times_s()[ONE_SECOND] - speed.to(path.dtype)


def check_keyframe_weight(value, *, field: str) -> float:
    """A keyframe weight (a number >= 0) as float; anything else is a `ValueError` naming `field`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{field}: expected a number >= 0, got {value!r}")
    return float(value)


def keyframe_weighting(batch, keyframe_weight: float) -> dict[str, torch.Tensor]:
    """The `sample_weight` keyword of a head's `loss` for a training batch ({} at weight 0), from the
    batch's recorded speed (before any ego augmentation) and its label waypoints."""
    if keyframe_weight <= 0:
        return {}
    speed = batch.sensors.ego_state[:, SPEED]
    return {"sample_weight": keyframe_weights(speed, batch.waypoints, keyframe_weight)}


def keyframe_weights(speed: torch.Tensor, waypoints: torch.Tensor, keyframe_weight: float) -> torch.Tensor:
    """Per-sample weights 1 + keyframe_weight * |speed change| (B,); see the module docstring."""
    if keyframe_weight < 0:
        raise ValueError(f"keyframe_weight: expected a value >= 0, got {keyframe_weight}")
    return 1.0 + keyframe_weight * plan_speed_change(speed, waypoints).abs()
