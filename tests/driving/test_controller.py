"""The tracking controller: exact speed recovery, no reversing, steering sign, lane keeping in closed loop."""

import math

import numpy as np
import pytest

from automot import spec
from driving.controller import Tracker
from driving.scenarios import build_scenario
from driving.world import World

T = np.array(spec.waypoint_times_s())


def test_constant_acceleration_plan_is_recovered_exactly():
    v0, a = 12.0, -2.0
    wp = np.stack([v0 * T + 0.5 * a * T**2, np.zeros(6)], 1)
    speed, accel = Tracker().planned_speed(wp)
    assert speed == pytest.approx(v0) and accel == pytest.approx(a)
    cmd = Tracker()(wp, v0)
    assert cmd.acceleration == pytest.approx(a, abs=1e-6)  # on target: feed-forward only
    assert cmd.steering == 0.0


def test_stop_plan_brakes_without_reversing():
    tracker = Tracker()
    cmd = tracker(np.zeros((6, 2)), speed=0.5)
    assert cmd.acceleration == pytest.approx(-0.5 / 0.25)  # exactly to standstill in one 0.25 s step
    assert tracker(np.zeros((6, 2)), speed=0.0).acceleration == 0.0


def test_steering_sign_and_highway_env_mapping():
    left = np.stack([10 * T, 0.5 * (10 * T) ** 2 / 20.0], 1)  # curving left, radius ~20 m
    cmd = Tracker()(left, speed=10.0)
    assert cmd.steering > 0  # left in the display / ego frame
    assert cmd.action[1] < 0  # highway-env's world frame is mirrored
    right = left * np.array([1.0, -1.0])
    assert Tracker()(right, speed=10.0).steering == pytest.approx(-cmd.steering)


def test_pure_pursuit_on_a_circle_commands_that_circle():
    """In steady turning the bicycle's velocity leads its heading by the slip angle beta; on a path that is a
    circle tangent to the velocity, pure pursuit must command exactly that circle (any lookahead)."""
    tracker = Tracker()
    for r, v in ((25.0, 8.0), (12.0, 5.0), (60.0, 20.0)):
        beta0 = math.asin(2.5 / r)  # highway-env: heading rate = v sin(beta) / (L / 2), L = 5 m
        phi = np.linspace(0.01, 2.0, 800)
        circle = np.stack([r * np.sin(phi), r * (1 - np.cos(phi))], 1)
        c, s = math.cos(beta0), math.sin(beta0)
        path = circle @ np.array([[c, s], [-s, c]])  # rotate by +beta: tangent to the velocity
        steer = tracker.steer(path, v)
        beta = math.atan(math.tan(steer) / 2)
        assert 2.5 / math.sin(beta) == pytest.approx(r, rel=1e-3)  # up to the polyline chords


def test_tracking_a_straight_lane_centre_keeps_the_lane():
    world = World(build_scenario("highway", density=0.0, duration_s=10.0))
    world.reset(1)
    tracker = Tracker()
    for _ in range(40):
        v = float(world.ego.speed)
        wp = np.stack([v * T, np.zeros(6)], 1)
        world.step(tracker(wp, v).action)
    lane = world.env.road.network.get_lane(world.ego.lane_index)
    _, lateral = lane.local_coordinates(world.ego.position)
    assert abs(lateral) < 0.2 and world.ego.speed == pytest.approx(25.0, abs=0.5)


def test_bad_waypoints_raise():
    with pytest.raises(ValueError, match="waypoints"):
        Tracker()(np.zeros((6, 3)), 1.0)
    with pytest.raises(ValueError, match="waypoints"):
        Tracker()(np.full((6, 2), np.nan), 1.0)
