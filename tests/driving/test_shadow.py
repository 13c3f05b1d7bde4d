"""The expert shadow (driving.shadow): the expert's plan at every state a policy reaches, never executed."""

from __future__ import annotations

import numpy as np
import pytest

from driving import build_scenario, split_seeds
from driving.baselines import ConstantVelocityPolicy
from driving.closed_loop import run_episode
from driving.controller import Tracker
from driving.expert import ExpertPolicy
from driving.shadow import ExpertShadow, shadow_table
from driving.world import World


@pytest.fixture(scope="module")
def roundabout():
    world = World(build_scenario("roundabout"))
    yield world
    world.close()


def test_the_expert_shadowing_itself_never_disagrees_and_drives_the_same(roundabout):
    seed = split_seeds("test", 1)[0]
    plain = run_episode(ExpertPolicy(), roundabout, seed, Tracker())
    shadowed = run_episode(ExpertShadow(ExpertPolicy()), roundabout, seed, Tracker())
    assert (shadowed.outcome, shadowed.score, shadowed.frames) == (plain.outcome, plain.score, plain.frames)
    shadow = shadowed.extra["shadow"]
    assert len(shadow["steps"]) == plain.frames
    assert (
        shadow["plan_l2_mean"] == 0.0
        and shadow["speed_gap_mean"] == 0.0
        and shadow["lateral_gap_mean"] == 0.0
    )
    assert shadow["first_divergence_s"] is None
    assert shadow["speed_change_sd"] == shadow["expert_speed_change_sd"] > 0.1  # it slows for the ring
    assert "shadow" not in plain.extra


def test_a_straight_line_planner_parts_from_the_expert_at_the_ring(roundabout):
    record = run_episode(
        ExpertShadow(ConstantVelocityPolicy()), roundabout, split_seeds("test", 1)[0], Tracker()
    )
    steps = record.extra["shadow"]["steps"]
    # Constant velocity plans v * t straight ahead: its implied speed is the observed speed, its lateral 0.
    assert all(abs(s["plan_speed"] - s["speed"]) < 2e-3 and s["plan_lateral"] == 0.0 for s in steps)
    # The copycat signature at its extreme: no planned speed change at all, where the expert's varies.
    shadow = record.extra["shadow"]
    assert shadow["speed_change_sd"] < 2e-3 and shadow["expert_speed_change_sd"] > 0.1
    # The expert follows the ring (it turns) and slows for it: the plans part, within the first 15 s.
    first = record.extra["shadow"]["first_divergence_s"]
    assert first is not None and 0.0 < first < 15.0
    gaps = [s["gap_1s"] for s in steps if s["t"] >= first]
    assert gaps[0] > 1.0 and max(abs(s["expert_lateral"]) for s in steps) > 0.5


def test_shadow_table_counts_and_means_by_hand():
    def rec(scenario, outcome, gap, lateral, l2, first, sd=None):
        shadow = {"speed_gap_mean": gap, "lateral_gap_mean": lateral, "plan_l2_mean": l2,
                  "first_divergence_s": first, "steps": [{}]}  # fmt: skip
        if sd is not None:  # records written before the speed-change fields existed lack them
            shadow.update(speed_change_sd=sd[0], expert_speed_change_sd=sd[1])
        return {"scenario": scenario, "outcome": outcome, "extra": {"shadow": shadow}}

    table = shadow_table(
        [
            rec("merge", "completed", -1.0, 0.2, 0.5, None, (0.2, 1.0)),
            rec("merge", "timeout", -3.0, 0.4, 1.5, 6.0, (0.4, 2.0)),
            rec("merge", "timeout", 1.0, 0.0, 1.0, 2.0),
            rec("highway", "collision", 0.5, 0.1, 2.0, 1.0),
            {"scenario": "highway", "outcome": "completed", "extra": {}},  # not shadowed: left out
        ]
    )
    merge = table["merge"]
    assert merge["episodes"] == 3 and merge["outcomes"] == {"completed": 1, "timeout": 2}
    assert sum(merge["outcomes"].values()) == merge["episodes"]
    assert merge["speed_gap_mean"] == pytest.approx(-1.0) and merge["lateral_gap_mean"] == pytest.approx(0.2)
    assert merge["plan_l2_mean"] == pytest.approx(1.0)
    assert merge["diverged"] == 2 and merge["first_divergence_s_median"] == pytest.approx(4.0)
    # Over the two records that have them.
    assert merge["speed_change_sd"] == pytest.approx(0.3) and merge[
        "expert_speed_change_sd"
    ] == pytest.approx(1.5)
    assert table["highway"]["speed_change_sd"] is None
    assert table["highway"]["episodes"] == 1 and np.isclose(table["highway"]["speed_gap_mean"], 0.5)


def test_a_divergence_must_last_a_second():
    shadow = ExpertShadow(ConstantVelocityPolicy(), expert=object())
    gaps = [
        0.2,
        1.5,
        1.5,
        0.3,
        1.2,
        1.2,
        1.2,
        1.2,
        1.2,
        0.1,
    ]  # 4 Hz: a 0.25 s blip at 0.25 s, a 1 s run from 1 s
    step = {"speed": 1.0, "plan_speed": 1.0, "expert_speed": 2.0, "plan_lateral": 0.0, "expert_lateral": 0.5}
    shadow.steps = [{**step, "t": 0.25 * i, "gap_1s": g, "l2": g} for i, g in enumerate(gaps)]
    summary = shadow.episode_summary()
    assert summary["first_divergence_s"] == 1.0
    assert summary["speed_gap_mean"] == -1.0 and summary["lateral_gap_mean"] == 0.5
    assert summary["speed_change_sd"] == 0.0 and summary["expert_speed_change_sd"] == 0.0  # constant changes
    # Expert speed changes of -2 and +2 m/s, half the steps each: a population sd of 2.
    shadow.steps = [{**s, "expert_speed": 1.0 + (2.0 if i % 2 else -2.0)} for i, s in enumerate(shadow.steps)]
    assert shadow.episode_summary()["expert_speed_change_sd"] == pytest.approx(2.0)
    shadow.steps = shadow.steps[:8]  # the run is cut at 0.75 s: no divergence
    assert shadow.episode_summary()["first_divergence_s"] is None
