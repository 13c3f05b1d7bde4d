"""Bench2Drive-style scoring: pure functions, then scripted closed-loop episodes in the real world."""

import numpy as np
import pytest

from automot import spec
from automot.io import read_jsonl
from automot.types import PolicyOutput
from driving.baselines import ConstantVelocityPolicy
from driving.closed_loop import EvalConfig, evaluate, policy_identity, run_episode
from driving.controller import Tracker
from driving.expert import ExpertPolicy
from driving.geometry import world_to_display
from driving.scenarios import build_scenario, split_seeds
from driving.scoring import PENALTIES, EpisodeRecord, finalize, route_score, summarize
from driving.world import World


def test_route_score_multiplies_penalties():
    assert route_score(100.0, []) == 100.0
    assert route_score(80.0, ["collision_vehicle"]) == pytest.approx(48.0)
    assert route_score(50.0, ["timeout"]) == pytest.approx(35.0)
    assert route_score(100.0, ["offroad", "offroad", "collision_static"]) == pytest.approx(100 * 0.65**3)
    with pytest.raises(ValueError, match="infraction_kinds"):
        route_score(50.0, ["red_light"])
    with pytest.raises(ValueError, match="route_completion"):
        route_score(120.0, [])


def test_summarize_ds_sr_and_counts():
    records = [
        finalize(EpisodeRecord("a", 1, "p", 100.0, [], "completed")),
        finalize(
            EpisodeRecord(
                "a", 2, "p", 40.0, [{"kind": "collision_vehicle", "step": 3, "time_s": 0.75}], "collision"
            )
        ),
        finalize(
            EpisodeRecord("b", 3, "p", 60.0, [{"kind": "timeout", "step": 9, "time_s": 2.25}], "timeout")
        ),
        finalize(
            EpisodeRecord("b", 4, "p", 100.0, [{"kind": "offroad", "step": 2, "time_s": 0.5}], "completed")
        ),
    ]
    s = summarize(records)
    assert s["ds"] == pytest.approx((100 + 24 + 42 + 65) / 4)
    assert s["sr"] == pytest.approx(25.0) and s["success_rate"] == pytest.approx(0.25)
    assert s["collision_rate"] == pytest.approx(0.25)
    assert s["infractions"] == {"collision_vehicle": 1, "collision_static": 0, "offroad": 1, "timeout": 1}
    assert s["per_scenario"]["b"]["ds"] == pytest.approx((42 + 65) / 2)
    assert not records[3].success  # completed but with an infraction


class RamPolicy:
    """Scripted: drive straight at the nearest vehicle ahead, faster than it."""

    name = "ram"

    def reset(self, episode):
        self.world = episode.env

    def plan(self, observation):
        w = self.world
        pose = w.ego_pose
        targets = [pose.to_local(world_to_display(v.position)) for v in w.env.road.vehicles if v is not w.ego]
        ahead = [t for t in targets if t[0] > 0]
        goal = min(ahead, key=lambda t: np.hypot(*t))
        direction = goal / np.linalg.norm(goal)
        times = np.array(spec.waypoint_times_s())
        speed = float(w.ego.speed) + 8.0
        return PolicyOutput(waypoints=(direction[None] * speed * times[:, None]).astype(np.float32))


def episode(policy, scenario, seed):
    world = World(scenario)
    try:
        return run_episode(policy, world, seed, Tracker()), world
    finally:
        world.close()


def test_collision_costs_exactly_0_6_and_ends_the_episode():
    record, world = episode(RamPolicy(), build_scenario("highway", density=1.0), split_seeds("test", 1)[0])
    assert record.outcome == "collision"
    assert [i["kind"] for i in record.infractions] == ["collision_vehicle"]
    assert record.frames == record.infractions[0]["step"] == world.step_index  # nothing driven after it
    assert 0.0 < record.route_completion < 100.0
    assert record.score == pytest.approx(record.route_completion * PENALTIES["collision_vehicle"], abs=1e-9)
    assert not record.success


def test_clean_completed_route_scores_100():
    scenario = build_scenario("highway", route_length_m=120.0, density=0.5)
    record, _ = episode(ExpertPolicy(), scenario, split_seeds("test", 1)[0])
    assert record.outcome == "completed" and record.infractions == []
    assert record.score == 100.0 and record.route_completion == 100.0 and record.success


def test_timeout_scores_completion_times_0_7():
    scenario = build_scenario("highway", density=0.0, duration_s=3.0)
    record, _ = episode(ConstantVelocityPolicy(), scenario, split_seeds("test", 1)[0])
    assert record.outcome == "timeout"
    assert [i["kind"] for i in record.infractions] == ["timeout"]
    assert record.frames == 12  # 3 s at 4 Hz
    # 3 s at the initial 25 m/s along a 400 m route.
    assert record.route_completion == pytest.approx(100 * 75.0 / 400.0, abs=0.5)
    assert record.score == pytest.approx(record.route_completion * 0.7, abs=1e-9)


class SwervePolicy:
    """Scripted: a hard right turn off the highway."""

    name = "swerve"

    def reset(self, episode):
        pass

    def plan(self, observation):
        t = np.array(spec.waypoint_times_s())
        return PolicyOutput(waypoints=np.stack([20 * t, -8 * t**2], 1).astype(np.float32))


def test_leaving_the_road_costs_0_65_and_a_long_excursion_ends_the_episode():
    scenario = build_scenario("highway", density=0.0)
    record, _world = episode(SwervePolicy(), scenario, split_seeds("test", 1)[0])
    assert [i["kind"] for i in record.infractions] == ["offroad"]
    assert record.outcome == "offroad"
    assert record.frames * 0.25 - record.infractions[0]["time_s"] == pytest.approx(2.0)
    assert record.score == pytest.approx(record.route_completion * 0.65, abs=1e-9)


def test_evaluate_appends_records_and_resumes(tmp_path):
    path = tmp_path / "records.jsonl"
    scenario = build_scenario("highway", density=0.0, duration_s=2.0)
    seeds = split_seeds("val", 3)
    first = evaluate(ConstantVelocityPolicy(), scenario, seeds[:2], EvalConfig(), records_path=path)
    assert len(read_jsonl(path)) == 2
    again = evaluate(ConstantVelocityPolicy(), scenario, seeds, EvalConfig(), records_path=path)
    rows = read_jsonl(path)
    assert len(rows) == 3  # only the missing seed ran
    assert [r.seed for r in again] == seeds
    assert again[0].to_json() == first[0].to_json()


class _Named(ConstantVelocityPolicy):
    """Constant velocity under an identity of the test's choosing (as a trained policy's weights digest)."""

    def __init__(self, ident: str) -> None:
        self.ident = ident

    def identity(self) -> str:
        return self.ident


def test_a_records_file_resumes_only_the_policy_that_wrote_it(tmp_path):
    """Records name the policy that drove (name and identity); another policy is refused instead of
    being handed the first one's episodes, and rows from before identities existed still resume."""
    path = tmp_path / "records.jsonl"
    scenario = build_scenario("highway", density=0.0, duration_s=2.0)
    seeds = split_seeds("val", 2)
    first = evaluate(_Named("weights-a"), scenario, seeds[:1], EvalConfig(), records_path=path)
    assert [r["policy_id"] for r in read_jsonl(path)] == ["weights-a"] == [first[0].policy_id]
    with pytest.raises(
        ValueError,
        match=r"expected episodes of policy 'constant_velocity' \(identity weights-b\).*identity weights-a",
    ):
        evaluate(_Named("weights-b"), scenario, seeds, EvalConfig(), records_path=path)
    with pytest.raises(
        ValueError, match=r"expected episodes of policy 'expert'.*driven by 'constant_velocity'"
    ):
        evaluate(ExpertPolicy(), scenario, seeds, EvalConfig(), records_path=path)
    assert len(read_jsonl(path)) == 1  # nothing was appended by the refused runs
    again = evaluate(_Named("weights-a"), scenario, seeds, EvalConfig(), records_path=path)
    assert again[0].to_json() == first[0].to_json() and len(read_jsonl(path)) == 2
    # a file written before records carried identities: the name alone decides
    old = tmp_path / "old.jsonl"
    old.write_text(
        "".join(__import__("json").dumps({**r, "policy_id": ""}) + "\n" for r in read_jsonl(path)[:1])
    )
    assert (
        evaluate(_Named("weights-z"), scenario, seeds[:1], EvalConfig(), records_path=old)[0].seed == seeds[0]
    )
    assert policy_identity(ConstantVelocityPolicy()) == ""
    assert policy_identity(ExpertPolicy()) == policy_identity(ExpertPolicy()) != ""
    from driving.expert import ExpertConfig

    assert policy_identity(ExpertPolicy(ExpertConfig(max_decel=5.0))) != policy_identity(ExpertPolicy())
