"""The shared specification of what is planned and decided (paper section 3.1, 3.2).

One place for the numbers every package must agree on: the world labels them, the action expert
predicts them, the heads plan them, the metrics score them.

Coordinates are in the ego frame at the current step: x forward, y to the left, metres.
"""

from __future__ import annotations

# Temporal trajectory: 6 waypoints, 0.5 s apart, covering 3 s.
NUM_WAYPOINTS = 6
WAYPOINT_DT_S = 0.5
# Spatial trajectory: 20 route points along the reference path.
NUM_ROUTE_POINTS = 20
ROUTE_SPACING_M = 2.0
# Meta-action decisions at 1 s, 2 s, 3 s (one token per horizon).
DECISION_HORIZONS_S = (1.0, 2.0, 3.0)

# Lateral x longitudinal meta-actions (nuScenes / NuSync style, 5 x 4 = 20 combinations).
LATERAL_ACTIONS = ("turn_left", "slight_left", "straight", "slight_right", "turn_right")
LONGITUDINAL_ACTIONS = ("accelerate", "slow", "keep", "stop")
# Longitudinal-only set used for CARLA (PDM-Meta): lateral boundaries are ambiguous in simulation.
LONGITUDINAL_ACTIONS_3 = ("accelerate", "keep", "slow")

# Current ego state fed to the action expert and to the refiner's AdaLN conditioning.
EGO_STATE_FIELDS = ("speed", "acceleration", "yaw_rate")
# Low-dimensional ego history: the last HISTORY_LEN states (oldest first) in the current ego frame.
HISTORY_LEN = 4
HISTORY_DT_S = 0.5
HISTORY_FIELDS = ("x", "y", "heading", "speed")

EGO_STATE_DIM = len(EGO_STATE_FIELDS)
HISTORY_DIM = len(HISTORY_FIELDS)


def waypoint_times_s() -> tuple[float, ...]:
    """Time stamps of the waypoints: (0.5, 1.0, ..., 3.0)."""
    return tuple(WAYPOINT_DT_S * (i + 1) for i in range(NUM_WAYPOINTS))


def horizon_waypoint_index(horizon_s: float) -> int:
    """Index of the waypoint at `horizon_s` seconds (1 s -> 1, 2 s -> 3, 3 s -> 5)."""
    idx = round(horizon_s / WAYPOINT_DT_S) - 1
    if not 0 <= idx < NUM_WAYPOINTS or abs((idx + 1) * WAYPOINT_DT_S - horizon_s) > 1e-9:
        raise ValueError(
            f"horizon_s: expected a multiple of {WAYPOINT_DT_S} in (0, {NUM_WAYPOINTS * WAYPOINT_DT_S}], got {horizon_s}"
        )
    return idx


# BEV raster channels (ego frame, x forward = up in the raster, y left = left in the raster).
BEV_CHANNELS = ("drivable", "lane_lines", "vehicles", "route")
# Frames of RGB history the understanding expert sees (paper: four consecutive frames).
UE_HISTORY_FRAMES = 4
