"""Car-following and lane-change rules of the expert: IDM (Treiber et al.) and a MOBIL-style check.

IDM: a = a_max [1 - (v / v0)^delta - (s* / s)^2],  s* = s0 + v T + v (v - v_lead) / (2 sqrt(a_max b)).
MOBIL (Kesting et al.): change lane when the new follower is not forced to brake harder than
`safe_decel` and the ego gains more than a threshold in acceleration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from automot.checks import check_positive


@dataclass
class IDMParams:
    max_accel: float = 3.0
    comfort_decel: float = 3.0
    min_gap: float = 3.0
    time_gap: float = 1.2
    delta: float = 4.0

    def __post_init__(self) -> None:
        for name in ("max_accel", "comfort_decel", "time_gap", "delta"):
            check_positive(f"IDMParams.{name}", getattr(self, name))
        check_positive("IDMParams.min_gap", self.min_gap, allow_zero=True)


def idm_free(speed: float, desired_speed: float, p: IDMParams) -> float:
    """The free-road term a_max (1 - (v / v0)^delta); below zero when faster than desired."""
    v0 = max(desired_speed, 0.1)
    ratio = max(speed, 0.0) / v0
    return p.max_accel * (1.0 - ratio**p.delta)


def idm_interaction(speed: float, lead_speed: float, gap: float, p: IDMParams) -> float:
    """The interaction term -a_max (s* / s)^2 for a leader `gap` metres ahead (bumper to bumper)."""
    v = max(speed, 0.0)
    s_star = p.min_gap + max(
        v * p.time_gap + v * (v - lead_speed) / (2.0 * math.sqrt(p.max_accel * p.comfort_decel)), 0.0
    )
    return -p.max_accel * (s_star / max(gap, 0.1)) ** 2


def idm_accel(speed: float, desired_speed: float, leaders: list[tuple[float, float]], p: IDMParams) -> float:
    """IDM acceleration with the most constraining of `leaders` [(gap, lead speed), ...]."""
    free = idm_free(speed, desired_speed, p)
    if not leaders:
        return free
    return free + min(idm_interaction(speed, v_lead, gap, p) for gap, v_lead in leaders)


# The other vehicles' IDM (highway-env's IDMVehicle defaults), used to judge what a lane change imposes on them.
TRAFFIC_IDM = IDMParams(max_accel=3.0, comfort_decel=5.0, min_gap=5.0, time_gap=1.5, delta=4.0)


@dataclass
class LaneGap:
    """Neighbours on a candidate lane: (gap, speed) of the leader and follower, None when absent."""

    leader: tuple[float, float] | None
    follower: tuple[float, float] | None
    follower_desired_speed: float = 30.0


def lane_change_safe(
    speed: float, desired_speed: float, gap: LaneGap, safe_decel: float, p: IDMParams
) -> bool:
    """Neither the ego nor the new follower would have to brake harder than `safe_decel`."""
    min_space = 1.0
    if gap.leader is not None:
        lead_gap = gap.leader[0]
        if lead_gap < min_space or idm_accel(speed, desired_speed, [gap.leader], p) < -safe_decel:
            return False
    if gap.follower is not None:
        follow_gap, follow_speed = gap.follower
        if follow_gap < min_space:
            return False
        imposed = idm_accel(follow_speed, gap.follower_desired_speed, [(follow_gap, speed)], TRAFFIC_IDM)
        if imposed < -safe_decel:
            return False
    return True
