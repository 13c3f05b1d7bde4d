"""DART collection: the executed trajectory leaves the label trajectory, and every label is the
noiseless expert's plan at the state actually visited (re-queried by replaying the executed actions)."""

import numpy as np
import pytest

from driving.controller import Tracker
from driving.expert import ExpertPolicy
from driving.labels import waypoint_labels
from driving.onpolicy import ControlNoise, OnPolicyConfig, collect_on_policy, run_labelled_episode
from driving.scenarios import build_scenario
from driving.shards import read_shard
from driving.world import World
from tests.driving._onpolicy import assert_labels_are_expert_plans, replay_expert_plans, small_collect


def test_dart_labels_are_the_noiseless_expert_plan_while_the_executed_path_differs(tmp_path):
    config = OnPolicyConfig(
        collect=small_collect(),
        noise=ControlNoise(acceleration_std=2.0, lateral_accel_std=1.5, correlation_s=1.0),
    )
    index = collect_on_policy(config, tmp_path / "dart")
    assert index["complete"] and len(index["episodes"]) == 2
    c = config.collect
    for scenario, seed in c.episodes_plan():
        world = World(build_scenario(scenario, **c.scenario_overrides[scenario]), c.sim, c.sensors)
        trace = run_labelled_episode(world, ExpertPolicy(), Tracker(c.sim), config, seed)
        replay, plans = replay_expert_plans(config, scenario, seed, trace.actions)
        shard = read_shard(tmp_path / "dart" / f"shards/{scenario}-{seed:07d}.npz")
        assert_labels_are_expert_plans(shard, plans, replay.log)
        # What was driven is not what was labelled: the executed future leaves the plan by metres.
        per_wp = c.sim.steps(0.5)
        gaps = [
            np.abs(waypoint_labels(replay.log, step, per_wp)[0] - shard["waypoints"][row]).max()
            for row, step in enumerate(shard["step"])
            if step + 6 * per_wp < len(replay.log)
        ]
        assert max(gaps) > 1.0


def test_without_noise_or_learner_the_actor_is_the_expert(tmp_path):
    config = OnPolicyConfig(collect=small_collect(episodes=1))
    c = config.collect
    scenario, seed = c.episodes_plan()[0]
    world = World(build_scenario(scenario, **c.scenario_overrides[scenario]), c.sim, c.sensors)
    expert, tracker = ExpertPolicy(), Tracker(c.sim)
    trace = run_labelled_episode(world, expert, tracker, config, seed)
    assert all(trace.expert_steps) and trace.outcome in ("completed", "timeout")  # 6 s of a longer route
    # The executed action is exactly the tracked expert plan at each step (replayed independently).
    replay, plans = replay_expert_plans(config, scenario, seed, trace.actions)
    check = Tracker(c.sim)
    for k, plan in enumerate(plans[:20]):
        expected = check(plan.waypoints, replay.log[k].speed, plan.route).action
        np.testing.assert_allclose(trace.actions[k], expected, atol=1e-9)


def test_bad_configs_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match=r"OnPolicyConfig\.beta"):
        OnPolicyConfig(beta=1.5)
    with pytest.raises(ValueError, match=r"OnPolicyConfig\.policy_id"):
        OnPolicyConfig(beta=0.5)
    with pytest.raises(ValueError, match=r"ControlNoise\.lateral_accel_std"):
        ControlNoise(lateral_accel_std=-0.1)
    with pytest.raises(ValueError, match="learner_factory"):
        collect_on_policy(OnPolicyConfig(beta=0.0, policy_id="x"), "/nonexistent")
