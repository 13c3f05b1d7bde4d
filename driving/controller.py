"""The tracking controller: a policy's waypoints (and route) -> a [acceleration, steering] action.

Longitudinal: the waypoints' arc lengths at 0.5 s and 1.0 s give the planned speed at 0.25 s and
0.75 s; their difference is the planned acceleration (feed-forward) and extrapolating back gives the
planned speed now, which a PI loop tracks. A constant-acceleration plan is reproduced exactly. The
command never brakes past standstill within one control period (highway-env would reverse).

Lateral: pure pursuit on the route points when the policy gives them (a spatial path, well defined
when stopped), else on the waypoints. highway-env's kinematic bicycle turns about the centre with slip
angle beta (heading rate = v sin(beta) / (L/2), steering delta = atan(2 tan beta)); the beta whose
velocity direction carries the centre through the lookahead point on a circle is closed-form:
tan(beta) = (L/Ld) sin(alpha) / (1 + (L/Ld) cos(alpha)), alpha = bearing of the point, Ld its distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from automot import spec
from automot.checks import check_positive
from driving.config import SimConfig
from driving.geometry import arc_length, interpolate_polyline


@dataclass
class TrackerConfig:
    kp_speed: float = 1.5
    ki_speed: float = 0.3
    integral_limit: float = 3.0
    lookahead_gain_s: float = 0.5  # lookahead distance = gain * speed + base
    lookahead_base_m: float = 4.0
    lookahead_max_m: float = 25.0
    stop_speed: float = 0.3  # planned speeds below this are a stop
    creep_speed: float = 1.0  # below this a stop plan stops within one control period
    vehicle_length: float = 5.0

    def __post_init__(self) -> None:
        for name in ("kp_speed", "lookahead_base_m", "lookahead_max_m", "vehicle_length"):
            check_positive(f"TrackerConfig.{name}", getattr(self, name))
        for name in ("ki_speed", "integral_limit", "lookahead_gain_s", "stop_speed", "creep_speed"):
            check_positive(f"TrackerConfig.{name}", getattr(self, name), allow_zero=True)


@dataclass
class Command:
    """What the tracker decided: physical units and the normalised action highway-env takes."""

    acceleration: float  # m/s^2
    steering: float  # rad, left positive (display frame)
    target_speed: float
    action: np.ndarray  # (2,) in [-1, 1]: [acc, steer] on highway-env's scale (its steer sign)


class Tracker:
    def __init__(self, sim: SimConfig | None = None, config: TrackerConfig | None = None) -> None:
        self.sim = sim or SimConfig()
        self.config = config or TrackerConfig()
        self.reset()

    def reset(self) -> None:
        self._integral = 0.0

    def planned_speed(self, waypoints: np.ndarray) -> tuple[float, float]:
        """(speed now, acceleration) implied by waypoints (Nw, 2) at WAYPOINT_DT_S spacing."""
        return planned_speed(waypoints)

    def __call__(self, waypoints: np.ndarray, speed: float, route: np.ndarray | None = None) -> Command:
        c = self.config
        waypoints = np.asarray(waypoints, dtype=np.float64)
        if waypoints.ndim != 2 or waypoints.shape[1] != 2 or len(waypoints) < 2:
            raise ValueError(f"waypoints: expected shape (Nw >= 2, 2), got {waypoints.shape}")
        if not np.all(np.isfinite(waypoints)):
            raise ValueError("waypoints: expected finite values, got NaN/Inf")
        target, feed_forward = self.planned_speed(waypoints)
        dt = self.sim.dt
        lo, hi = self.sim.acceleration_range
        if target < c.stop_speed and feed_forward <= 0.5:
            target, feed_forward = 0.0, 0.0
            self._integral = 0.0
        error = target - speed
        self._integral = float(np.clip(self._integral + error * dt, -c.integral_limit, c.integral_limit))
        accel = feed_forward + c.kp_speed * error + c.ki_speed * self._integral
        if target == 0.0 and speed < c.creep_speed:
            accel = -speed / dt  # a stop plan at crawling speed: stand still now instead of creeping
        accel = max(accel, -speed / dt)  # stop at zero, never reverse
        accel = float(np.clip(accel, lo, hi))
        path = waypoints if route is None else np.asarray(route, dtype=np.float64)
        if not np.all(np.isfinite(path)):
            raise ValueError("route: expected finite values, got NaN/Inf")
        steering = self.steer(path, speed)
        steer_max = self.sim.steering_range_rad
        steering = float(np.clip(steering, -steer_max, steer_max))
        # highway-env steers in the world frame, whose y axis is the display frame's mirror image.
        action = np.array([np.interp(accel, [lo, hi], [-1.0, 1.0]), -steering / steer_max])
        return Command(acceleration=accel, steering=steering, target_speed=target, action=action)

    def steer(self, path: np.ndarray, speed: float) -> float:
        """Pure-pursuit steering angle (rad, left positive) towards `path` (N, 2), ego frame."""
        c = self.config
        poly = np.vstack([np.zeros(2), path])
        total = arc_length(poly)[-1]
        if total < 0.5:
            return 0.0
        lookahead = min(c.lookahead_gain_s * max(speed, 0.0) + c.lookahead_base_m, c.lookahead_max_m)
        point = _point_at_distance(poly, lookahead)
        dist = float(np.hypot(*point))
        if dist < 1e-6:
            return 0.0
        alpha = math.atan2(point[1], point[0])
        ratio = c.vehicle_length / dist
        beta = math.atan2(ratio * math.sin(alpha), 1.0 + ratio * math.cos(alpha))
        return math.atan(2.0 * math.tan(beta))


def planned_speed(waypoints: np.ndarray) -> tuple[float, float]:
    """(speed now, acceleration) implied by waypoints (Nw, 2) at WAYPOINT_DT_S spacing: the first two
    segments' mean speeds are the speeds at dt/2 and 3dt/2; extrapolating back gives the speed now."""
    dt = spec.WAYPOINT_DT_S
    s = arc_length(np.vstack([np.zeros(2), waypoints[:2]]))
    v_early = s[1] / dt  # mean speed over [0, dt]: the speed at dt/2 under constant acceleration
    v_late = (s[2] - s[1]) / dt  # the speed at 3 dt / 2
    accel = (v_late - v_early) / dt
    return max(v_early - accel * dt / 2, 0.0), accel


def _point_at_distance(poly: np.ndarray, distance: float) -> np.ndarray:
    """First point of the polyline at Euclidean `distance` from the origin (extending the last segment)."""
    radii = np.hypot(poly[:, 0], poly[:, 1])
    beyond = np.nonzero(radii >= distance)[0]
    if len(beyond) == 0:
        s = arc_length(poly)
        return interpolate_polyline(poly, np.array([s[-1] + (distance - radii[-1])]))[0]
    j = int(beyond[0])
    a, b = poly[j - 1], poly[j]
    # Solve |a + t (b - a)| = distance for t in [0, 1].
    d = b - a
    qa, qb, qc = d @ d, 2 * a @ d, a @ a - distance**2
    disc = max(qb * qb - 4 * qa * qc, 0.0)
    t = (-qb + math.sqrt(disc)) / (2 * qa) if qa > 0 else 1.0
    return a + np.clip(t, 0.0, 1.0) * d
