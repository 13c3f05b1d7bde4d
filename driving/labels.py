"""Ground truth cut from an episode's log (paper section 3.2 targets; Senna-style meta-actions).

All positions are in the ego frame at the sample's step (x forward, y left, metres).

- waypoints (6, 2): the ego's own positions 0.5, 1.0, ..., 3.0 s later.
- route (20, 2): the path the ego drives, every 2 m from its position (2 m .. 40 m); past the end of the
  log the route's reference line continues it, shifted by the ego's last lateral offset from it.
- agent boxes (6, A, 5) + mask (6, A): the A objects nearest at the sample's step (within range), at the
  6 waypoint times, as (x, y, heading, length, width); mask False where an object has left the scene.
- meta-actions at 1, 2, 3 s from the future trajectory (`MetaActionThresholds`):
  lateral: heading change >= turn_deg left/right -> turn_left / turn_right; else lateral displacement
  >= slight_m -> slight_left / slight_right; else straight.
  longitudinal (4-way): speed at the horizon < stop_speed -> stop; else mean acceleration
  (v_h - v_0) / h > accel -> accelerate, < -accel -> slow, else keep.
  longitudinal (3-way, PDM-Meta): accelerate / keep / slow from the mean acceleration alone (so a car
  standing still keeps, a car braking to a stop slows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from automot import spec
from automot.checks import check_positive
from driving.geometry import arc_length, interpolate_polyline, project_to_polyline


@dataclass(frozen=True)
class MetaActionThresholds:
    turn_deg: float = 25.0
    slight_m: float = 1.0
    stop_speed: float = 1.0
    accel: float = 0.5

    def __post_init__(self) -> None:
        for name in ("turn_deg", "slight_m", "stop_speed", "accel"):
            check_positive(f"MetaActionThresholds.{name}", getattr(self, name))


def lateral_action(
    heading_change: float, lateral_offset: float, t: MetaActionThresholds = MetaActionThresholds()
) -> int:
    """Index into `spec.LATERAL_ACTIONS` from the heading change (rad, left +) and lateral offset (m, left +)."""
    turn = math.radians(t.turn_deg)
    if heading_change >= turn:
        name = "turn_left"
    elif heading_change <= -turn:
        name = "turn_right"
    elif lateral_offset >= t.slight_m:
        name = "slight_left"
    elif lateral_offset <= -t.slight_m:
        name = "slight_right"
    else:
        name = "straight"
    return spec.LATERAL_ACTIONS.index(name)


def longitudinal_action(
    v0: float, vh: float, horizon_s: float, t: MetaActionThresholds = MetaActionThresholds()
) -> int:
    """Index into `spec.LONGITUDINAL_ACTIONS` (accelerate, slow, keep, stop)."""
    if vh < t.stop_speed:
        name = "stop"
    else:
        name = _accel_word((vh - v0) / horizon_s, t)
    return spec.LONGITUDINAL_ACTIONS.index(name)


def longitudinal3_action(
    v0: float, vh: float, horizon_s: float, t: MetaActionThresholds = MetaActionThresholds()
) -> int:
    """Index into `spec.LONGITUDINAL_ACTIONS_3` (accelerate, keep, slow)."""
    return spec.LONGITUDINAL_ACTIONS_3.index(_accel_word((vh - v0) / horizon_s, t))


def _accel_word(mean_accel: float, t: MetaActionThresholds) -> str:
    if mean_accel > t.accel:
        return "accelerate"
    if mean_accel < -t.accel:
        return "slow"
    return "keep"


@dataclass
class MetaActions:
    lateral: np.ndarray  # (K,) int64, K = len(spec.DECISION_HORIZONS_S)
    longitudinal: np.ndarray  # (K,) int64
    longitudinal3: np.ndarray  # (K,) int64


def meta_actions(
    positions: np.ndarray,
    headings: np.ndarray,
    speeds: np.ndarray,
    v0: float,
    thresholds: MetaActionThresholds = MetaActionThresholds(),
) -> MetaActions:
    """Labels at `spec.DECISION_HORIZONS_S` from the future at the waypoint times: positions (6, 2) and
    headings (6,) in the current ego frame, speeds (6,), current speed v0."""
    lat, lon, lon3 = [], [], []
    for h in spec.DECISION_HORIZONS_S:
        k = spec.horizon_waypoint_index(h)
        lat.append(lateral_action(float(headings[k]), float(positions[k, 1]), thresholds))
        lon.append(longitudinal_action(v0, float(speeds[k]), h, thresholds))
        lon3.append(longitudinal3_action(v0, float(speeds[k]), h, thresholds))
    as_array = lambda v: np.array(v, dtype=np.int64)  # noqa: E731
    return MetaActions(as_array(lat), as_array(lon), as_array(lon3))


# ---------------------------------------------------------------------------------------------- from a log
def future_indices(index: int, steps_per_waypoint: int) -> list[int]:
    return [index + steps_per_waypoint * (k + 1) for k in range(spec.NUM_WAYPOINTS)]


def waypoint_labels(
    log: list, index: int, steps_per_waypoint: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions (6, 2), headings (6,), speeds (6,)) of the ego at the waypoint times, ego frame at `index`."""
    now = log[index].ego
    future = [log[i] for i in future_indices(index, steps_per_waypoint)]
    positions = now.to_local(np.array([s.ego.position for s in future]))
    headings = np.array([now.heading_to_local(s.ego.heading) for s in future], dtype=np.float64)
    speeds = np.array([s.speed for s in future], dtype=np.float64)
    return positions, headings, speeds


def route_labels(log: list, index: int, reference: np.ndarray) -> np.ndarray:
    """(20, 2): the driven path ahead every `spec.ROUTE_SPACING_M`, continued along `reference` (display frame)."""
    now = log[index].ego
    driven = np.array([s.ego.position for s in log[index:]])
    needed = spec.ROUTE_SPACING_M * spec.NUM_ROUTE_POINTS
    last = driven[-1]
    proj = project_to_polyline(last[None], reference)
    s_end, offset = float(proj.s[0]), float(proj.d[0])
    ahead = s_end + np.arange(1.0, needed + 2.0, 1.0)
    centre = interpolate_polyline(reference, ahead)
    tangent = np.gradient(centre, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)  # left of the reference
    continuation = centre + offset * normal
    path = np.vstack([driven, continuation])
    points = interpolate_polyline(path, spec.ROUTE_SPACING_M * np.arange(1, spec.NUM_ROUTE_POINTS + 1))
    if arc_length(path)[-1] < needed:  # cannot happen with the continuation; guards a broken reference
        raise ValueError(
            f"route label: expected at least {needed} m of path ahead, got {arc_length(path)[-1]:.1f} m"
        )
    return now.to_local(points)


def agent_labels(
    log: list, index: int, steps_per_waypoint: int, max_agents: int, range_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """Future boxes (6, A, 5) float32 and mask (6, A) bool of the nearest objects at `index` (mask False at
    waypoint times past the end of the log)."""
    now = log[index]
    objects = now.objects
    boxes = np.zeros((spec.NUM_WAYPOINTS, max_agents, 5), dtype=np.float32)
    mask = np.zeros((spec.NUM_WAYPOINTS, max_agents), dtype=bool)
    if len(objects.ids):
        dist = np.linalg.norm(objects.boxes[:, :2] - now.ego.position, axis=1)
        order = np.lexsort((objects.ids, dist))  # nearest first, ties by id: deterministic
        chosen = [int(objects.ids[i]) for i in order if dist[i] <= range_m][:max_agents]
        for k, i in enumerate(future_indices(index, steps_per_waypoint)):
            if i >= len(log):
                break  # an on-policy episode that ended early: no future logged, the mask stays False
            future = log[i].objects
            where = {int(obj_id): j for j, obj_id in enumerate(future.ids)}
            for a, obj_id in enumerate(chosen):
                if obj_id not in where:
                    continue
                box = future.boxes[where[obj_id]]
                local = now.ego.to_local(box[:2])
                boxes[k, a] = (local[0], local[1], now.ego.heading_to_local(box[2]), box[3], box[4])
                mask[k, a] = True
    return boxes, mask
