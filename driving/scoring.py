"""Bench2Drive-style closed-loop scoring (paper section 4, table 9 protocol).

Route completion RC in [0, 100] is the share of the route driven. Each infraction multiplies the route
score by its penalty: collision with a vehicle 0.6 (and ends the episode), with a static object or
leaving the road 0.65, running out of time 0.7. Route score = RC x product of penalties; the driving
score DS is the mean route score; the success rate SR is the share of routes completed (RC = 100)
with no infraction.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field

# How an episode ends: at the destination, in a collision, after a long excursion off the road, or out of time.
OUTCOMES = ("completed", "collision", "offroad", "timeout")

PENALTIES: dict[str, float] = {
    "collision_vehicle": 0.6,
    "collision_static": 0.65,
    "offroad": 0.65,
    "timeout": 0.7,
}


@dataclass
class EpisodeRecord:
    scenario: str
    seed: int
    policy: str
    route_completion: float  # percent, [0, 100]
    infractions: list[dict] = field(default_factory=list)  # {"kind", "step", "time_s"}
    outcome: str = ""  # "completed", "collision", "timeout", "offroad"
    score: float = 0.0  # route score, [0, 100]
    success: bool = False
    frames: int = 0  # policy steps driven
    sim_time_s: float = 0.0
    wall_time_s: float = 0.0
    extra: dict = field(default_factory=dict)
    policy_id: str = ""  # which policy drove: its `identity()` (weights and settings digest), "" if none

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> EpisodeRecord:
        return cls(**data)


def route_score(route_completion: float, infraction_kinds: list[str]) -> float:
    """RC (percent) times the product of the infractions' penalties."""
    if not 0.0 <= route_completion <= 100.0 + 1e-9:
        raise ValueError(f"route_completion: expected a percentage in [0, 100], got {route_completion}")
    unknown = sorted(set(infraction_kinds) - set(PENALTIES))
    if unknown:
        raise ValueError(f"infraction_kinds: expected kinds from {sorted(PENALTIES)}, got {unknown}")
    return float(route_completion * math.prod(PENALTIES[k] for k in infraction_kinds))


def finalize(record: EpisodeRecord) -> EpisodeRecord:
    """Fill `score` and `success` from completion and infractions."""
    kinds = [i["kind"] for i in record.infractions]
    record.score = route_score(record.route_completion, kinds)
    record.success = record.route_completion >= 100.0 - 1e-6 and not kinds
    return record


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def summarize(records: list[EpisodeRecord]) -> dict:
    """DS, SR (percent), mean route completion, infraction counts and rates, episode outcome counts and
    the mean ego speed (m/s, mean over episodes of each episode's mean), overall and per scenario."""
    if not records:
        raise ValueError("records: expected at least one EpisodeRecord, got none")

    def block(rs: list[EpisodeRecord]) -> dict:
        n = len(rs)
        counts = Counter(i["kind"] for r in rs for i in r.infractions)
        collided = sum(1 for r in rs if r.outcome == "collision")
        return {
            "episodes": n,
            "ds": sum(r.score for r in rs) / n,
            "sr": 100.0 * sum(r.success for r in rs) / n,
            "success_rate": sum(r.success for r in rs) / n,
            "route_completion": sum(r.route_completion for r in rs) / n,
            "collision_rate": collided / n,
            "infractions": {k: counts.get(k, 0) for k in PENALTIES},
            "outcomes": {k: sum(1 for r in rs if r.outcome == k) for k in OUTCOMES},
            "mean_speed": _mean([r.extra.get("mean_speed") for r in rs]),
        }

    out = block(records)
    scenarios = sorted({r.scenario for r in records})
    out["per_scenario"] = {s: block([r for r in records if r.scenario == s]) for s in scenarios}
    return out
