"""Vectorised lane coordinates for highway-env lanes (their own methods take one point at a time).

`lane_coordinates(lane, points)` returns highway-env's (longitudinal, lateral) for many world points at
once, with exactly the lane's own definitions (a SineLane's lateral is measured from its straight
chord minus the sine, as in `SineLane.local_coordinates`), so "on the lane" here means what it means
to the simulator.
"""

from __future__ import annotations

import numpy as np
from highway_env.road.lane import AbstractLane, CircularLane, SineLane, StraightLane


def lane_coordinates(lane: AbstractLane, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 2) -> (s, r) arrays (N,) in `lane`'s highway-env coordinates."""
    points = np.asarray(points, dtype=np.float64)
    if isinstance(lane, StraightLane):  # includes SineLane
        delta = points - lane.start
        s = delta @ lane.direction
        r = delta @ lane.direction_lateral
        if isinstance(lane, SineLane):
            r = r - lane.amplitude * np.sin(lane.pulsation * s + lane.phase)
        return s, r
    if isinstance(lane, CircularLane):
        delta = points - lane.center
        phi = np.arctan2(delta[:, 1], delta[:, 0])
        phi = lane.start_phase + (phi - lane.start_phase + np.pi) % (2 * np.pi) - np.pi
        radius = np.linalg.norm(delta, axis=1)
        return lane.direction * (phi - lane.start_phase) * lane.radius, lane.direction * (
            lane.radius - radius
        )
    raise ValueError(
        f"lane: expected a StraightLane, SineLane or CircularLane, got {type(lane).__name__} (not supported by the BEV)"
    )


def lane_outline(lane: AbstractLane, step_m: float = 1.0, margin_m: float = 0.0) -> np.ndarray:
    """World points (K, 2) on both lane edges, widened by `margin_m`: a superset for bounding boxes."""
    n = max(2, int(np.ceil(lane.length / step_m)) + 1)
    s = np.linspace(0.0, lane.length, n)
    pts = []
    for v in s:
        half = lane.width_at(v) / 2 + margin_m
        pts.append(lane.position(v, -half))
        pts.append(lane.position(v, half))
    return np.array(pts)


def iter_lanes(network):
    """All (lane_index, lane) of a RoadNetwork in a fixed order."""
    for _from, to_dict in network.graph.items():
        for _to, lanes in to_dict.items():
            for i, lane in enumerate(lanes):
                yield (_from, _to, i), lane
