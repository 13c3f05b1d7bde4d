"""Where a learned policy parts from the expert: drive with the policy, ask the privileged expert at every state.

`ExpertShadow(policy)` is a policy: it executes `policy`'s plan and, at each state the policy reaches, also
asks the rule-based expert what it would plan there (never executed, the expert only labels, as in a
DAgger round). Per step it records the two plans' speeds and lateral offsets, so an episode's failure can be
read as a disagreement: a policy that creeps while the expert's plan keeps speed (the inertia problem), that
keeps its lane while the expert overtakes, that goes while the expert yields. `episode_summary()` goes into
the episode record's `extra["shadow"]` (`driving.closed_loop.run_episode`).

    records = evaluate(ExpertShadow(policy), "roundabout", split_seeds("test", 3))
    records[0].extra["shadow"]["first_divergence_s"]   # the 1 s waypoints > 1 m apart for >= 1 s from here

Per-step fields (the `steps` list): `t` (s), `speed` (m/s), `plan_speed` / `expert_speed` (each plan's
mean speed over its first second: a plan that starts off from standstill is told from one that stays),
`plan_lateral` / `expert_lateral` (m, the 1 s waypoint's lateral offset, left positive), `gap_1s` (m, the
distance between the two 1 s waypoints), `l2` (m, mean distance between the two plans' waypoints).

The copycat signature: `speed_change_sd` / `expert_speed_change_sd` are the standard deviations over the
episode of each plan's speed change (its first-second speed minus the current speed). A policy that plans
"about the speed I have" at every state has a small one where the expert, slowing for a yield and
starting off again, has a large one.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from automot import spec
from automot.types import EpisodeInfo, Observation, PolicyOutput
from driving.geometry import arc_length

DIVERGENCE_M = 1.0  # the 1 s waypoints this far apart ...
DIVERGENCE_S = 1.0  # ... for at least this long mark a divergence


def _speed_next_second(waypoints: np.ndarray, one_s: int) -> float:
    """Mean speed over the plan's first second (m/s): its path length to the 1 s waypoint. Unlike the
    speed now, it tells a plan that starts off from standstill from one that stays."""
    return (
        float(arc_length(np.vstack([np.zeros(2), waypoints[: one_s + 1]]))[-1])
        / spec.waypoint_times_s()[one_s]
    )


class ExpertShadow:
    """Wraps `policy`; its plans are executed, the expert's are only recorded. Same `name` as `policy`."""

    def __init__(self, policy, expert=None) -> None:
        from driving.closed_loop import policy_name
        from driving.expert import ExpertPolicy

        self.policy = policy
        self.expert = expert if expert is not None else ExpertPolicy()
        self.name = policy_name(policy)
        self.steps: list[dict] = []
        self._world = None

    def reset(self, episode: EpisodeInfo) -> None:
        self.policy.reset(episode)
        self.expert.reset(episode)
        self._world = episode.env
        self.steps = []

    def plan(self, observation: Observation) -> PolicyOutput:
        out = self.policy.plan(observation)
        label = self.expert.plan(observation)
        mine = np.asarray(out.waypoints, dtype=np.float64)
        theirs = np.asarray(label.waypoints, dtype=np.float64)
        one_s = spec.horizon_waypoint_index(1.0)
        self.steps.append(
            {
                "t": round(float(self._world.time_s), 3),  # the world handle the expert needs anyway
                "speed": round(float(observation.ego_state[spec.EGO_STATE_FIELDS.index("speed")]), 3),
                "plan_speed": round(_speed_next_second(mine, one_s), 3),
                "expert_speed": round(_speed_next_second(theirs, one_s), 3),
                "plan_lateral": round(float(mine[one_s, 1]), 3),
                "expert_lateral": round(float(theirs[one_s, 1]), 3),
                "l2": round(float(np.linalg.norm(mine - theirs, axis=1).mean()), 3),
                "gap_1s": round(float(np.linalg.norm(mine[one_s] - theirs[one_s])), 3),
            }
        )
        return out

    def episode_summary(self) -> dict:
        """Means over the episode's steps and the first divergence; the per-step list under `steps`."""
        if not self.steps:
            return {"steps": []}
        speed_gap = [s["plan_speed"] - s["expert_speed"] for s in self.steps]
        change = {who: [s[f"{who}_speed"] - s["speed"] for s in self.steps] for who in ("plan", "expert")}
        diverged, run_start = [], None
        for step in self.steps:
            if step["gap_1s"] <= DIVERGENCE_M:
                run_start = None
                continue
            run_start = step["t"] if run_start is None else run_start
            if step["t"] - run_start >= DIVERGENCE_S - 1e-9:
                diverged.append(run_start)
        return {
            "plan_l2_mean": round(float(np.mean([s["l2"] for s in self.steps])), 3),
            "speed_gap_mean": round(float(np.mean(speed_gap)), 3),  # policy - expert, m/s
            "lateral_gap_mean": round(
                float(np.mean([abs(s["plan_lateral"] - s["expert_lateral"]) for s in self.steps])), 3
            ),
            "first_divergence_s": diverged[0] if diverged else None,
            "speed_change_sd": round(float(np.std(change["plan"])), 3),  # m/s, population sd
            "expert_speed_change_sd": round(float(np.std(change["expert"])), 3),
            "steps": self.steps,
        }


def _mean(rows: list[dict], key: str) -> float | None:
    """The mean of `key` over the rows that have it (records written before a field existed lack it)."""
    values = [r[key] for r in rows if key in r]
    return round(float(np.mean(values)), 3) if values else None


def shadow_table(records: list[dict]) -> dict[str, dict]:
    """Per scenario, over episode records (JSON) that carry `extra["shadow"]`: episodes, outcome counts,
    the mean speed gap (policy - expert, m/s), mean |lateral gap| at 1 s (m), mean plan L2 (m), the mean
    per-episode sd of the policy's and the expert's planned speed change (m/s), how many episodes
    diverged and the median time of their first divergence (s)."""
    table: dict[str, dict] = {}
    for scenario in sorted({r["scenario"] for r in records}):
        rows = [r for r in records if r["scenario"] == scenario and "shadow" in r.get("extra", {})]
        if not rows:
            continue
        shadows = [r["extra"]["shadow"] for r in rows if r["extra"]["shadow"].get("steps")]
        first = [s["first_divergence_s"] for s in shadows if s["first_divergence_s"] is not None]
        outcomes = dict(Counter(r["outcome"] for r in rows))
        table[scenario] = {
            "episodes": len(rows),
            "outcomes": outcomes,
            "speed_gap_mean": _mean(shadows, "speed_gap_mean"),
            "lateral_gap_mean": _mean(shadows, "lateral_gap_mean"),
            "plan_l2_mean": _mean(shadows, "plan_l2_mean"),
            "speed_change_sd": _mean(shadows, "speed_change_sd"),
            "expert_speed_change_sd": _mean(shadows, "expert_speed_change_sd"),
            "diverged": len(first),
            "first_divergence_s_median": round(float(np.median(first)), 2) if first else None,
        }
    return table
