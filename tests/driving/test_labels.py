"""Meta-action labeller on hand-built trajectories, and labels cut from a synthetic log."""

import math

import numpy as np

from automot import spec
from driving.geometry import Pose
from driving.labels import (
    agent_labels,
    longitudinal3_action,
    longitudinal_action,
    meta_actions,
    route_labels,
    waypoint_labels,
)
from driving.world import ObjectState, StepState

T = np.array(spec.waypoint_times_s())  # 0.5 .. 3.0


def names(labels):
    return (
        [spec.LATERAL_ACTIONS[i] for i in labels.lateral],
        [spec.LONGITUDINAL_ACTIONS[i] for i in labels.longitudinal],
        [spec.LONGITUDINAL_ACTIONS_3[i] for i in labels.longitudinal3],
    )


def test_straight_at_constant_speed():
    v = 10.0
    pos = np.stack([v * T, np.zeros_like(T)], 1)
    lat, lon, lon3 = names(meta_actions(pos, np.zeros(6), np.full(6, v), v))
    assert lat == ["straight"] * 3 and lon == ["keep"] * 3 and lon3 == ["keep"] * 3


def test_hard_brake_to_a_stop():
    v0, a = 10.0, -5.0  # stops after 2 s
    v = np.maximum(v0 + a * T, 0.0)
    s = np.where(T < 2.0, v0 * T + 0.5 * a * T**2, 10.0)
    lat, lon, lon3 = names(meta_actions(np.stack([s, 0 * s], 1), np.zeros(6), v, v0))
    # 1 s: v = 5 (mean decel 5 m/s^2) -> slow; 2 s and 3 s: standing -> stop; 3-way: slow throughout.
    assert lon == ["slow", "stop", "stop"]
    assert lon3 == ["slow", "slow", "slow"]
    assert lat == ["straight"] * 3


def test_accelerating_and_standing_still():
    v0 = 5.0
    v = v0 + 1.0 * T  # +1 m/s^2 > 0.5 threshold
    assert (
        names(meta_actions(np.stack([v0 * T + 0.5 * T**2, 0 * T], 1), np.zeros(6), v, v0))[1]
        == ["accelerate"] * 3
    )
    still = names(meta_actions(np.zeros((6, 2)), np.zeros(6), np.zeros(6), 0.0))
    assert still == (["straight"] * 3, ["stop"] * 3, ["keep"] * 3)


def test_left_lane_change_is_slight_left_once_displaced():
    # 3.5 m to the left over 3 s along a smooth (cosine) profile, heading change below 10 degrees.
    v = 20.0
    y = 3.5 * (1 - np.cos(np.pi * T / 3.0)) / 2
    heading = np.arctan(np.gradient(y, v * T))
    assert np.degrees(np.abs(heading)).max() < 10
    lat, _, _ = names(meta_actions(np.stack([v * T, y], 1), heading, np.full(6, v), v))
    # y(1 s) = 0.44 m -> straight; y(2 s) = 2.6 m, y(3 s) = 3.5 m -> slight left.
    assert lat == ["straight", "slight_left", "slight_left"]


def test_right_lane_change_mirrors_left():
    v = 20.0
    y = -3.5 * (1 - np.cos(np.pi * T / 3.0)) / 2
    lat, _, _ = names(
        meta_actions(np.stack([v * T, y], 1), np.arctan(np.gradient(y, v * T)), np.full(6, v), v)
    )
    assert lat == ["straight", "slight_right", "slight_right"]


def test_right_and_left_turns():
    # A quarter circle of radius 10 m at 5 m/s: heading changes 0.5 rad/s (28.6 deg per second).
    v, r = 5.0, 10.0
    phi = v * T / r
    right_pos = np.stack([r * np.sin(phi), -r * (1 - np.cos(phi))], 1)
    lat, lon, _ = names(meta_actions(right_pos, -phi, np.full(6, v), v))
    assert lat == ["turn_right"] * 3 and lon == ["keep"] * 3
    left_pos = right_pos * np.array([1.0, -1.0])
    assert names(meta_actions(left_pos, phi, np.full(6, v), v))[0] == ["turn_left"] * 3


def test_threshold_edges():
    # Mean acceleration exactly at the threshold keeps; just above accelerates.
    assert spec.LONGITUDINAL_ACTIONS[longitudinal_action(10.0, 10.5, 1.0)] == "keep"
    assert spec.LONGITUDINAL_ACTIONS[longitudinal_action(10.0, 10.51, 1.0)] == "accelerate"
    assert spec.LONGITUDINAL_ACTIONS_3[longitudinal3_action(10.0, 9.0, 1.0)] == "slow"


# ------------------------------------------------------------------------- labels from a synthetic log
def make_log(headings_deg: float = 90.0, speed: float = 10.0, steps: int = 40, dt: float = 0.25):
    """Ego driving straight in the display frame at `speed` with heading `headings_deg`; one static box
    and one box moving with the ego 10 m to its left; a third object disappears after 1 s."""
    h = math.radians(headings_deg)
    direction = np.array([math.cos(h), math.sin(h)])
    left = np.array([-math.sin(h), math.cos(h)])
    log = []
    for k in range(steps):
        p = np.array([100.0, 50.0]) + direction * speed * dt * k
        ids, boxes = [0, 1], [[150.0, 60.0, 0.3, 5.0, 2.0], [*(p + 10 * left), h, 4.0, 2.0]]
        if k < 4:
            ids.append(2)
            boxes.append([*(p + 5 * direction), h, 5.0, 2.0])
        log.append(
            StepState(
                step=k,
                time_s=k * dt,
                ego=Pose(float(p[0]), float(p[1]), h),
                speed=speed,
                acceleration=0.0,
                yaw_rate=0.0,
                objects=ObjectState(
                    ids=np.array(ids),
                    boxes=np.array(boxes),
                    speeds=np.zeros(len(ids)),
                    static=np.zeros(len(ids), bool),
                ),
                progress_s=0.0,
                on_road=True,
            )
        )
    return log


def test_waypoints_are_in_the_ego_frame_whatever_the_heading():
    for heading in (0.0, 90.0, -135.0):
        positions, headings, speeds = waypoint_labels(make_log(heading), 4, steps_per_waypoint=2)
        np.testing.assert_allclose(positions, np.stack([10.0 * T, np.zeros(6)], 1), atol=1e-9)
        np.testing.assert_allclose(headings, 0.0, atol=1e-12)
        np.testing.assert_allclose(speeds, 10.0)


def test_agent_boxes_are_nearest_first_in_the_ego_frame_with_masks():
    log = make_log(90.0)
    boxes, mask = agent_labels(log, 0, steps_per_waypoint=2, max_agents=3, range_m=60.0)
    # Nearest first: the object 5 m ahead (id 2), then the companion 10 m to the left (id 1); the static
    # one is ~51 m away (within range) and comes third.
    np.testing.assert_allclose(boxes[0, 0, :2], [5.0 + 10.0 * 0.5, 0.0], atol=1e-9)  # moved with the ego
    assert mask[0, 0] and not mask[1:, 0].any()  # gone after 1 s (step 4): only t = 0.5 s is valid
    np.testing.assert_allclose(boxes[:, 1, :2], np.stack([10.0 * T, np.full(6, 10.0)], 1), atol=1e-9)
    np.testing.assert_allclose(boxes[:, 1, 2], 0.0, atol=1e-12)
    # The static box: display (150, 60) seen from (100, 50) heading +90 deg -> x = 10, y = -50, at every
    # waypoint time (boxes stay in the ego frame of the sample's step).
    np.testing.assert_allclose(boxes[:, 2, :3], np.tile([10.0, -50.0, 0.3 - math.pi / 2], (6, 1)), atol=1e-5)
    assert mask[:, 1:].all()
    _boxes2, mask2 = agent_labels(log, 0, 2, max_agents=3, range_m=20.0)
    assert not mask2[:, 2].any()  # out of range -> padded


def test_route_labels_follow_the_driven_path_then_the_reference():
    log = make_log(0.0, steps=12)  # 2.75 s at 10 m/s: 27.5 m driven
    reference = np.stack([np.linspace(0, 400, 401), np.full(401, 53.0)], 1)  # a line 3 m to the left
    route = route_labels(log, 0, reference)
    expected_x = 2.0 * np.arange(1, 21)
    np.testing.assert_allclose(route[:, 0], expected_x, atol=1e-6)
    # The continuation keeps the ego's 3 m offset from the reference: still y = 0.
    np.testing.assert_allclose(route[:, 1], 0.0, atol=1e-6)
