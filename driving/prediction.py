"""Privileged forecasts of the other objects, and where they meet the ego's planned path.

Forecast: highway-env's IDM vehicles follow lanes, so each one is advanced along its own target lane
and route (the lanes it will actually take) at its current speed, its lateral offset decaying over
`lateral_settle_s` (a lane change in progress). Static objects stay. Output in the display frame.

Corridor: the ego's path swept by the ego's width; an object is in it when its footprint's half-extent
across the path plus the ego's half-width exceed its lateral distance to the path.

Axes: N objects, T forecast times, M path vertices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from driving.geometry import heading_to_display, project_to_polyline, world_to_display


@dataclass
class Forecast:
    positions: np.ndarray  # (N, T, 2) display frame
    headings: np.ndarray  # (N, T)
    lengths: np.ndarray  # (N,)
    widths: np.ndarray  # (N,)
    speeds: np.ndarray  # (N,)
    objects: list  # the highway-env objects, in order


def forecast(network, objects: list, times: np.ndarray, lateral_settle_s: float = 1.5) -> Forecast:
    n, t = len(objects), len(times)
    positions = np.zeros((n, t, 2))
    headings = np.zeros((n, t))
    for i, obj in enumerate(objects):
        lane_index = getattr(obj, "target_lane_index", None)
        if lane_index is None or obj.speed <= 0.0 or not hasattr(obj, "route"):
            positions[i] = world_to_display(obj.position)
            headings[i] = heading_to_display(obj.heading)
            continue
        route = list(obj.route) if obj.route else None
        lane = network.get_lane(lane_index)
        s0, r0 = lane.local_coordinates(obj.position)
        offset = 0.0  # arc length consumed by lanes already left behind
        for k, tk in enumerate(times):
            s = s0 + obj.speed * tk - offset
            while s > lane.length:
                nxt = network.next_lane(lane_index, route=route, position=lane.position(lane.length, 0.0))
                if nxt == lane_index:
                    break
                offset += lane.length
                s -= lane.length
                lane_index, lane = nxt, network.get_lane(nxt)
            r = r0 * max(0.0, 1.0 - tk / lateral_settle_s)
            positions[i, k] = world_to_display(lane.position(s, r))
            headings[i, k] = heading_to_display(lane.heading_at(min(max(s, 0.0), lane.length)))
    return Forecast(
        positions=positions,
        headings=headings,
        lengths=np.array([o.LENGTH for o in objects], dtype=np.float64),
        widths=np.array([o.WIDTH for o in objects], dtype=np.float64),
        speeds=np.array([max(o.speed, 0.0) for o in objects], dtype=np.float64),
        objects=list(objects),
    )


@dataclass
class CorridorHits:
    """Forecast objects against the ego path: arc length of the centre `s` (N, T), lateral `d` (N, T),
    relative heading `rel` (N, T), the object's extent along the path `ext_along` (N, T), and `inside`
    (N, T) bool when the footprint overlaps the ego's swept corridor."""

    s: np.ndarray
    d: np.ndarray
    rel: np.ndarray
    ext_along: np.ndarray
    inside: np.ndarray


def corridor_hits(
    fc: Forecast, path: np.ndarray, path_length: float, ego_width: float, margin: float
) -> CorridorHits:
    n, t = fc.headings.shape
    if n == 0:
        empty = np.zeros((0, t))
        return CorridorHits(empty, empty, empty, empty, empty.astype(bool))
    proj = project_to_polyline(fc.positions.reshape(-1, 2), path)
    s = proj.s.reshape(n, t)
    d = proj.d.reshape(n, t)
    rel = fc.headings - proj.heading.reshape(n, t)
    half_l, half_w = fc.lengths[:, None] / 2, fc.widths[:, None] / 2
    ext_across = half_l * np.abs(np.sin(rel)) + half_w * np.abs(np.cos(rel))
    ext_along = half_l * np.abs(np.cos(rel)) + half_w * np.abs(np.sin(rel))
    inside = (
        (np.abs(d) <= ego_width / 2 + ext_across + margin)
        & (s + ext_along >= 0.0)
        & (s - ext_along <= path_length)
    )
    return CorridorHits(s=s, d=d, rel=rel, ext_along=ext_along, inside=inside)
