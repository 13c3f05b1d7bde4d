"""Shared by the on-policy tests (DART here, DAgger in tests/training): small configs and an independent
replay that re-queries a fresh expert at every state an episode visited."""

import numpy as np
import pytest

from automot.types import EpisodeInfo
from driving.collect import CollectConfig
from driving.config import CameraConfig, SensorConfig
from driving.expert import ExpertPolicy
from driving.labels import meta_actions
from driving.onpolicy import OnPolicyConfig
from driving.scenarios import build_scenario
from driving.world import World


def small_collect(scenario: str = "merge", episodes: int = 2, seed_start: int = 0) -> CollectConfig:
    return CollectConfig(
        scenarios=[scenario],
        episodes=episodes,
        split="train",
        seed_start=seed_start,
        scenario_overrides={scenario: {"duration_s": 6.0}},
        sensors=SensorConfig(camera=CameraConfig(height=16, width=16)),
    )


def replay_expert_plans(
    config: OnPolicyConfig, scenario: str, seed: int, actions: list
) -> tuple[World, list]:
    """Drive `actions` again in a fresh world; a fresh (noiseless) expert plans at every state visited."""
    c = config.collect
    world = World(build_scenario(scenario, **c.scenario_overrides.get(scenario, {})), c.sim, c.sensors)
    observation = world.reset(seed)
    expert = ExpertPolicy()
    expert.reset(EpisodeInfo(scenario, seed, world))
    plans = []
    for action in actions:
        plans.append(expert.plan(observation))
        world.step(action)
        observation = world.observe()
    return world, plans


def assert_labels_are_expert_plans(shard: dict, plans: list, log: list) -> None:
    assert len(shard["step"]) > 10
    for row, step in enumerate(shard["step"]):
        plan = plans[step]
        np.testing.assert_allclose(shard["waypoints"][row], plan.waypoints, atol=1e-5)
        np.testing.assert_allclose(shard["route"][row], plan.route, atol=1e-5)
        meta = meta_actions(
            plan.waypoints, plan.info["waypoint_headings"], plan.info["waypoint_speeds"], log[step].speed
        )
        np.testing.assert_array_equal(shard["longitudinal"][row], meta.longitudinal)
        np.testing.assert_array_equal(shard["lateral"][row], meta.lateral)
        assert shard["ego_state"][row][0] == pytest.approx(log[step].speed, abs=1e-5)
