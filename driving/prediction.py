"""Privileged forecasts of the other objects, and where they meet the ego's planned path.

Forecast: highway-env's IDM vehicles follow lanes, so each one is advanced along its own target lane
and route (the lanes it will actually take) at its current speed, its lateral offset decaying over
`lateral_settle_s` (a lane change in progress). Static objects stay. Output in the display frame.

`routes="known"` reads each vehicle's planned route: privileged, since nothing a camera sees tells
which way a car at a junction will turn (highway-env's vehicles do not signal). `routes="any"` makes
one forecast per way the vehicle could go instead (a branch at every lane end with several
successors within the horizon): the forecast a driver who sees only positions and speeds must
assume, so an expert that yields to every branch labels what its observations support.

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


ROUTES = ("known", "any")


def forecast(
    network, objects: list, times: np.ndarray, lateral_settle_s: float = 1.5, routes: str = "known"
) -> Forecast:
    """Forecast rows (N', T): one per object with `routes="known"`, one per (object, branch) with
    `routes="any"` (`objects` then repeats an object once per branch)."""
    if routes not in ROUTES:
        raise ValueError(f"forecast routes: expected one of {list(ROUTES)}, got {routes!r}")
    t = len(times)
    rows: list[tuple[object, np.ndarray, np.ndarray]] = []
    for obj in objects:
        lane_index = getattr(obj, "target_lane_index", None)
        if lane_index is None or obj.speed <= 0.0 or not hasattr(obj, "route"):
            rows.append(
                (
                    obj,
                    np.repeat(world_to_display(obj.position)[None], t, 0),
                    np.full(t, heading_to_display(obj.heading)),
                )
            )
            continue
        lane = network.get_lane(lane_index)
        s0, r0 = lane.local_coordinates(obj.position)
        reach = s0 + obj.speed * float(times[-1])
        if routes == "known":
            chains = [_known_chain(network, lane_index, list(obj.route) if obj.route else None, reach)]
        else:
            chains = _branches(network, lane_index, reach)
        for chain in chains:
            rows.append((obj, *_along(network, chain, s0, r0, obj.speed, times, lateral_settle_s)))
    n = len(rows)
    return Forecast(
        positions=np.array([r[1] for r in rows], dtype=np.float64).reshape(n, t, 2),
        headings=np.array([r[2] for r in rows], dtype=np.float64).reshape(n, t),
        lengths=np.array([o.LENGTH for o, _, _ in rows], dtype=np.float64),
        widths=np.array([o.WIDTH for o, _, _ in rows], dtype=np.float64),
        speeds=np.array([max(o.speed, 0.0) for o, _, _ in rows], dtype=np.float64),
        objects=[o for o, _, _ in rows],
    )


def _known_chain(network, lane_index, route, reach: float) -> list:
    """The lanes a vehicle takes along its planned `route` until it has covered `reach` metres."""
    chain, lane = [lane_index], network.get_lane(lane_index)
    while reach > lane.length:
        nxt = network.next_lane(lane_index, route=route, position=lane.position(lane.length, 0.0))
        if nxt == lane_index:
            break
        reach -= lane.length
        lane_index, lane = nxt, network.get_lane(nxt)
        chain.append(lane_index)
    return chain


def _branches(network, lane_index, reach: float) -> list[list]:
    """Every lane sequence from `lane_index` that a vehicle could take within `reach` metres: at a lane
    end, one branch per next road (highway-env's lane choice on it), none back where it came from."""
    lane = network.get_lane(lane_index)
    if reach <= lane.length:
        return [[lane_index]]
    _from, _to, _ = lane_index
    end = lane.position(lane.length, 0.0)
    nexts = [n for n in network.graph.get(_to, {}) if n != _from]
    out = []
    for next_to in nexts:
        nxt = network.next_lane(lane_index, route=[(_to, next_to, None)], position=end)
        if nxt == lane_index:
            continue
        out += [[lane_index, *rest] for rest in _branches(network, nxt, reach - lane.length)]
    return out or [[lane_index]]


def _along(network, chain: list, s0: float, r0: float, speed: float, times: np.ndarray, settle: float):
    """Positions (T, 2) and headings (T,) of an object advancing at `speed` along the lane `chain`."""
    positions, headings = np.zeros((len(times), 2)), np.zeros(len(times))
    j, lane, offset = 0, network.get_lane(chain[0]), 0.0  # offset: arc length of lanes left behind
    for k, tk in enumerate(times):
        s = s0 + speed * tk - offset
        while s > lane.length and j + 1 < len(chain):
            offset += lane.length
            s -= lane.length
            j += 1
            lane = network.get_lane(chain[j])
        r = r0 * max(0.0, 1.0 - tk / settle)
        positions[k] = world_to_display(lane.position(s, r))
        headings[k] = heading_to_display(lane.heading_at(min(max(s, 0.0), lane.length)))
    return positions, headings


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
