"""The drivable area of a highway-env road network: its lanes plus the patches that join them.

highway-env connects roads by node, not by geometry: at the roundabout the entry and exit lanes start
5-8 m away from the ring lanes they join, leaving holes that its vehicles cross. A junction patch is
the convex hull of the last metres of an incoming lane and the first metres of an outgoing lane at
the same node (when their ends are less than `JOIN_M` apart). Off-road detection and the BEV's drivable channel both use
lanes + patches, so they agree.
"""

from __future__ import annotations

import numpy as np

from driving.sensors.lanes import iter_lanes, lane_coordinates

JOIN_M = 9.0
# The patch spans the last metres of the incoming lane and the first metres of the outgoing one, where
# vehicles (and the expert's blended path) cross from one to the other.
_BEFORE_M = (0.0, 4.0, 8.0)
_AFTER_M = (0.0, 4.0, 8.0, 12.0, 16.0)


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (counter-clockwise, no repeated end point) of a few 2-D points (monotone chain)."""
    pts = sorted(map(tuple, np.round(points, 9)))
    if len(pts) <= 2:
        return np.array(pts)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def junction_patches(network) -> list[np.ndarray]:
    """World-frame convex polygons (K, 2) filling the gaps where lanes join at a node."""
    incoming: dict[str, list] = {}
    for (_from, _to, _), lane in iter_lanes(network):
        incoming.setdefault(_to, []).append(lane)
    patches = []
    for node, lanes_in in incoming.items():
        for to_lanes in network.graph.get(node, {}).values():
            for b in to_lanes:
                for a in lanes_in:
                    gap = np.linalg.norm(a.position(a.length, 0.0) - b.position(0.0, 0.0))
                    if 0.1 < gap < JOIN_M:
                        ha, hb = a.width_at(a.length) / 2, b.width_at(0.0) / 2
                        corners = [
                            a.position(max(a.length - d, 0.0), side * ha)
                            for d in _BEFORE_M
                            for side in (-1, 1)
                        ]
                        corners += [
                            b.position(min(d, b.length), side * hb) for d in _AFTER_M for side in (-1, 1)
                        ]
                        hull = _hull(np.array(corners))
                        if len(hull) >= 3:
                            patches.append(hull)
    return patches


def inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N,) bool: points (N, 2) inside a convex counter-clockwise polygon (K, 2), boundary inclusive."""
    points = np.atleast_2d(points)
    a = polygon
    b = np.roll(polygon, -1, axis=0)
    edge = b - a
    rel = points[:, None, :] - a[None]
    cross = edge[None, :, 0] * rel[..., 1] - edge[None, :, 1] * rel[..., 0]
    return np.all(cross >= -1e-9, axis=1)


class DrivableArea:
    def __init__(self, network, margin_m: float = 0.0) -> None:
        self.lanes = [lane for _, lane in iter_lanes(network)]
        self.patches = junction_patches(network)
        self.margin = margin_m

    def contains(self, position: np.ndarray) -> bool:
        """Is a world position on a lane (within `margin_m` of its edge) or in a junction patch?"""
        p = np.asarray(position, dtype=np.float64)[None]
        for lane in self.lanes:
            s, r = lane_coordinates(lane, p)
            if abs(r[0]) <= lane.width_at(0.0) / 2 + self.margin and -1.0 <= s[0] <= lane.length + 1.0:
                return True
        return any(bool(inside_polygon(p, patch)[0]) for patch in self.patches)
