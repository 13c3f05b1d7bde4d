"""The world's observation: shapes per the shared contract, history in the ego frame, async samples."""

import numpy as np
import pytest

from automot import spec
from automot.types import EpisodeInfo, SensorBatch
from driving.config import CameraConfig, SensorConfig
from driving.controller import Tracker
from driving.expert import ExpertPolicy
from driving.scenarios import build_scenario
from driving.world import World


@pytest.fixture(scope="module")
def driven():
    """A roundabout episode driven 24 steps by the expert (the ego turns, so frames matter)."""
    world = World("roundabout", sensors=SensorConfig(camera=CameraConfig(height=32, width=48)))
    obs0 = world.reset(5)
    expert, tracker = ExpertPolicy(), Tracker()
    expert.reset(EpisodeInfo("roundabout", 5, world))
    obs = obs0
    for _ in range(24):
        out = expert.plan(obs)
        world.step(tracker(out.waypoints, float(world.ego.speed), out.route).action)
        obs = world.observe()
    yield world, obs0, obs
    world.close()


def test_observation_matches_the_shared_contract(driven):
    _world, _, obs = driven
    assert (
        obs.rgb_history.shape == (spec.UE_HISTORY_FRAMES, 1, 3, 32, 48) and obs.rgb_history.dtype == np.uint8
    )
    assert obs.rgb.shape == (3, 32, 48) and obs.rgb.dtype == np.uint8
    assert obs.bev.shape == (len(spec.BEV_CHANNELS), 64, 64) and obs.bev.dtype == np.float32
    assert set(np.unique(obs.bev)) <= {0.0, 1.0}
    assert obs.ego_state.shape == (spec.EGO_STATE_DIM,) and obs.ego_history.shape == (
        spec.HISTORY_LEN,
        spec.HISTORY_DIM,
    )
    assert obs.target_point.shape == (2,) and isinstance(obs.prompt, str)
    assert obs.step == 24 and obs.time_s == pytest.approx(6.0)
    batch = SensorBatch.from_observations([obs, obs])
    assert batch.batch_size == 2


def test_history_at_reset_is_extrapolated_backwards(driven):
    _, obs0, _ = driven
    v = obs0.ego_state[0]
    expected = np.array([[-v * 0.5 * k, 0.0, 0.0, v] for k in (4, 3, 2, 1)], dtype=np.float32)
    np.testing.assert_allclose(obs0.ego_history, expected, atol=1e-4)
    assert np.array_equal(obs0.rgb_history[0], obs0.rgb_history[-1])  # the first frame repeats


def test_history_rows_are_past_poses_in_the_current_frame(driven):
    world, _, obs = driven
    now = world.log[24].ego
    for row, k in zip(obs.ego_history, (4, 3, 2, 1)):
        past = world.log[24 - 2 * k]
        local = now.to_local(past.ego.position)
        np.testing.assert_allclose(row[:2], local, atol=1e-4)
        assert row[2] == pytest.approx(float(now.heading_to_local(past.ego.heading)), abs=1e-5)
        assert row[3] == pytest.approx(past.speed, abs=1e-5)
    # The ego state's yaw rate is the heading change over the last step.
    assert obs.ego_state[2] == pytest.approx(
        (world.log[24].ego.heading - world.log[23].ego.heading) / 0.25, abs=1e-4
    )


def test_asynchronous_observation_uses_older_frames(driven):
    world, _, _ = driven
    obs = world.observe(index=20, ue_index=16)
    assert np.array_equal(obs.rgb, world.frames[20])
    assert np.array_equal(obs.rgb_history[-1, 0], world.frames[16])
    assert np.array_equal(obs.rgb_history[0, 0], world.frames[10])  # 3 intervals of 0.5 s before
    with pytest.raises(ValueError, match="ue_index"):
        world.observe(index=10, ue_index=12)


def test_target_point_is_ahead_on_the_route():
    world = World(build_scenario("highway", density=0.0))
    obs = world.reset(0)
    assert obs.target_point[0] == pytest.approx(30.0, abs=0.5) and abs(obs.target_point[1]) < 0.5
    with pytest.raises(ValueError, match="action"):
        world.step(np.array([0.0, np.nan]))


def test_a_vehicle_spawned_after_another_left_gets_a_new_id():
    """Object ids must not be recycled: highway-env removes cars and spawns new ones, and CPython
    hands a freed car's address to a later object. Two cars under one id would merge their tracks
    in the agent-future labels. Each round frees a car, allocates candidates and spawns the one at
    the freed address if the allocator reused it (the case `id(obj)` keys get wrong)."""
    import gc

    from highway_env.vehicle.kinematics import Vehicle

    world = World("intersection")
    world.reset(3)
    road = world.env.road
    seen = set(world._objects().ids.tolist())
    for k in range(6):
        leaving = next(v for v in road.vehicles if v is not world.ego)
        freed = id(leaving)
        road.vehicles.remove(leaving)
        del leaving
        gc.collect()
        candidates = [Vehicle(road, np.array([200.0 + 10 * k, 0.0]), 0.0, 5.0) for _ in range(64)]
        road.vehicles.append(next((c for c in candidates if id(c) == freed), candidates[0]))
        del candidates
        ids = world._objects().ids.tolist()
        assert ids[-1] not in seen, f"round {k}: the spawned car got the id {ids[-1]} of an earlier one"
        assert len(set(ids)) == len(ids)
        seen.update(ids)
    world.close()
