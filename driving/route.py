"""A route on a highway-env road network: the edges to follow, a reference lane per edge, a destination.

The route is what the ego is asked to drive and what route completion is measured on: the reference
polyline (display frame, sampled every metre) runs from the start to the destination and continues
past it so labels near the end still have points ahead. Progress is the arc length of the ego's
projection on it, searched in a window around the last progress so a route that passes near itself
cannot jump.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from driving.geometry import arc_length, interpolate_polyline, project_to_polyline, world_to_display

LaneIndex = tuple[str, str, int]

# Sampling step of reference polylines and how far they continue past the destination.
_STEP_M = 1.0
_TAIL_M = 80.0


@dataclass(frozen=True)
class Maneuver:
    """The route's one navigation decision: `command` in words, taken on edges `first_edge`..`last_edge`.

    `s_start`/`s_end` (arc lengths on the reference polyline) are filled in by `Route.build_geometry`.
    """

    kind: str  # "intersection", "roundabout" or "merge"
    command: str  # e.g. "turn left", "take the second exit", "merge left"
    first_edge: int
    last_edge: int
    s_start: float = 0.0
    s_end: float = 0.0


@dataclass
class Route:
    edges: list[tuple[str, str]]
    lanes: list[int]  # reference lane id on each edge
    start_s: float  # longitudinal start on the first reference lane
    end_s: float  # longitudinal destination on the last reference lane
    maneuver: Maneuver | None = None
    # Filled by `build_geometry`.
    polyline: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    edge_start_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    goal_s: float = 0.0

    def __post_init__(self) -> None:
        if len(self.edges) != len(self.lanes) or not self.edges:
            raise ValueError(
                f"Route.lanes: expected one lane id per edge ({len(self.edges)} edges), got {len(self.lanes)}"
            )

    @property
    def lane_indices(self) -> list[LaneIndex]:
        return [(a, b, lane) for (a, b), lane in zip(self.edges, self.lanes)]

    def edge_index(self, lane_index: LaneIndex) -> int | None:
        try:
            return self.edges.index((lane_index[0], lane_index[1]))
        except ValueError:
            return None

    def build_geometry(self, network) -> Route:
        """Sample the reference lanes into `polyline` (display frame) and record where each edge starts."""
        points, starts = [], []
        total = 0.0
        for i, index in enumerate(self.lane_indices):
            lane = network.get_lane(index)
            s_from = self.start_s if i == 0 else 0.0
            s_to = self.end_s + _TAIL_M if i == len(self.edges) - 1 else lane.length
            n = max(2, int(np.ceil((s_to - s_from) / _STEP_M)) + 1)
            s = np.linspace(s_from, s_to, n)
            pts = world_to_display(np.array([lane.position(float(v), 0.0) for v in s]))
            if points:
                total += float(np.linalg.norm(pts[0] - points[-1][-1]))
            starts.append(total - (s_from if i == 0 else 0.0))
            if i == len(self.edges) - 1:
                self.goal_s = total + (self.end_s - s_from)
            total += float(arc_length(pts)[-1])
            points.append(pts)
        self.polyline = np.concatenate(points)
        self.edge_start_s = np.array(starts)
        if self.maneuver is not None:
            m = self.maneuver
            last = network.get_lane(self.lane_indices[m.last_edge])
            self.maneuver = replace(
                m,
                s_start=float(self.edge_start_s[m.first_edge]),
                s_end=float(self.edge_start_s[m.last_edge] + last.length),
            )
        return self

    def s_on_edge(self, edge: int, longitudinal: float) -> float:
        """Arc length on the reference polyline of a longitudinal coordinate on edge `edge`'s lane."""
        return float(self.edge_start_s[edge] + longitudinal)

    def point_at(self, s: float | np.ndarray) -> np.ndarray:
        return interpolate_polyline(self.polyline, np.asarray(s, dtype=np.float64))


class ProgressTracker:
    """Monotone route progress: the furthest arc length reached, from windowed projections."""

    def __init__(
        self, route: Route, position: np.ndarray, window_back_m: float = 10.0, window_ahead_m: float = 40.0
    ):
        self.route = route
        self.window = (window_back_m, window_ahead_m)
        s_all = arc_length(route.polyline)
        self._s_all = s_all
        self.start_s = self._project(position, 0.0, np.inf)
        self.current_s = self.start_s
        self.max_s = self.start_s

    def _project(self, position: np.ndarray, lo: float, hi: float) -> float:
        s_all = self._s_all
        i0 = max(int(np.searchsorted(s_all, lo)) - 1, 0)
        i1 = min(int(np.searchsorted(s_all, hi)) + 1, len(s_all))
        window = self.route.polyline[i0:i1]
        if len(window) < 2:
            window = self.route.polyline[max(i0 - 1, 0) : i0 + 2]
            i0 = max(i0 - 1, 0)
        proj = project_to_polyline(np.asarray(position)[None], window)
        return float(s_all[i0] + proj.s[0])

    def update(self, position: np.ndarray) -> float:
        back, ahead = self.window
        self.current_s = self._project(position, self.current_s - back, self.current_s + ahead)
        self.max_s = max(self.max_s, self.current_s)
        return self.completion

    @property
    def length(self) -> float:
        return max(self.route.goal_s - self.start_s, 1e-6)

    @property
    def completion(self) -> float:
        """Share of the route driven, in [0, 1]."""
        return float(np.clip((self.max_s - self.start_s) / self.length, 0.0, 1.0))

    @property
    def remaining_m(self) -> float:
        return max(self.route.goal_s - self.current_s, 0.0)
