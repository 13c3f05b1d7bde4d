"""Forecasts along the vehicles' known routes or along every way they could go (`driving.prediction`),
and the expert that assumes the latter (`ExpertConfig.other_routes`)."""

from __future__ import annotations

import numpy as np
import pytest

from driving.closed_loop import evaluate
from driving.collect import CollectConfig
from driving.expert import ExpertConfig, ExpertPolicy
from driving.prediction import forecast
from driving.scenarios import split_seeds
from driving.shadow import ExpertShadow
from driving.world import World

TIMES = np.arange(0.0, 5.0 + 1e-9, 0.25)


def _others(world):
    return [o for o in [*world.env.road.vehicles, *world.env.road.objects] if o is not world.ego]


def _rows(fc, obj) -> list[int]:
    return [i for i, o in enumerate(fc.objects) if o is obj]


def test_every_known_route_is_one_of_the_branches_and_branches_part_ways():
    world = World("intersection")
    world.reset(split_seeds("val", 1)[0])
    network, others = world.env.road.network, _others(world)
    known = forecast(network, others, TIMES)
    branches = forecast(network, others, TIMES, routes="any")
    assert known.objects == others  # one row per object
    branching = 0
    for i, obj in enumerate(others):
        rows = _rows(branches, obj)
        # the route the vehicle will take is among the branches, to the last bit
        assert any(np.array_equal(known.positions[i], branches.positions[j]) for j in rows)
        for j in rows:  # every branch starts where the vehicle is
            assert np.allclose(branches.positions[j, 0], known.positions[i, 0])
        ends = {tuple(np.round(branches.positions[j, -1], 6)) for j in rows}
        assert len(ends) == len(rows)  # distinct branches end in distinct places
        branching += len(rows) > 1
    assert branching >= 1  # the junction gives someone a choice within 5 s
    assert np.array_equal(branches.speeds, np.array([max(o.speed, 0.0) for o in branches.objects]))


def test_on_the_highway_there_is_nothing_to_choose():
    world = World("highway")
    world.reset(split_seeds("val", 1)[0])
    others = _others(world)
    known = forecast(world.env.road.network, others, TIMES)
    branches = forecast(world.env.road.network, others, TIMES, routes="any")
    assert branches.objects == known.objects and np.array_equal(branches.positions, known.positions)


def test_the_route_blind_expert_is_never_faster_and_sometimes_slower():
    """More hypotheses are more leaders and stop lines: at every state the known-route expert reaches,
    the route-blind expert plans no faster, and on this layout it slows down for cars that turn away."""
    blind = ExpertPolicy(ExpertConfig(other_routes="any"))
    record = evaluate(ExpertShadow(ExpertPolicy(), blind), "intersection", split_seeds("val", 1))[0]
    steps = record.extra["shadow"]["steps"]
    gaps = np.array([s["plan_speed"] - s["expert_speed"] for s in steps])  # known - blind, m/s
    assert gaps.min() >= -1e-3 and gaps.max() > 1.0


def test_bad_route_modes_are_refused_by_name():
    with pytest.raises(
        ValueError, match=r"ExpertConfig.other_routes: expected one of \['known', 'any'\], got 'all'"
    ):
        ExpertConfig(other_routes="all")
    with pytest.raises(ValueError, match="forecast routes"):
        forecast(None, [], TIMES, routes="all")
    with pytest.raises(ValueError, match="other_routes"):
        CollectConfig(expert={"other_routes": "all"})


def test_a_collection_names_its_expert_only_when_it_is_not_the_default():
    """Folders collected before `CollectConfig.expert` existed keep their config hash."""
    assert "expert" not in CollectConfig().to_json()
    config = CollectConfig(expert={"other_routes": "any"})
    assert config.to_json()["expert"] == {"other_routes": "any"}
    assert config.expert_config().other_routes == "any"
    assert CollectConfig(**config.to_json()).expert_config().other_routes == "any"


def test_build_policy_hands_the_expert_its_config_and_nothing_else():
    from driving.baselines import ConstantVelocityPolicy, build_policy

    config = ExpertConfig(other_routes="any")
    assert build_policy("expert", config).config is config
    assert build_policy("expert").config.other_routes == "known"
    assert isinstance(build_policy("constant_velocity", config), ConstantVelocityPolicy)
