"""Open-loop collision geometry on hand-built cases."""

import math

import pytest
import torch

from driving.collision import boxes_overlap, plan_collisions, waypoint_headings


def straight_plan(speed: float = 10.0) -> torch.Tensor:
    t = torch.arange(1, 7, dtype=torch.float32) * 0.5
    return torch.stack([speed * t, torch.zeros(6)], -1)[None]  # (1, 6, 2)


def boxes_at(k: int, box, agents: int = 2):
    boxes = torch.zeros(1, 6, agents, 5)
    mask = torch.zeros(1, 6, agents, dtype=torch.bool)
    boxes[0, k, 0] = torch.tensor(box)
    mask[0, k, 0] = True
    return boxes, mask


EGO = torch.tensor([[5.0, 2.0]])


def test_agent_on_one_waypoint_collides_only_at_that_time():
    boxes, mask = boxes_at(2, [15.0, 0.0, 0.0, 5.0, 2.0])
    hit = plan_collisions(straight_plan(), boxes, mask, EGO)
    assert hit.tolist() == [[False, False, True, False, False, False]]


def test_lateral_clearance_and_touching():
    # Ego width 2, agent width 2: centres 2.01 m apart side by side do not overlap; 1.9 m apart do.
    for offset, expected in ((2.01, False), (1.9, True), (2.0, False)):
        boxes, mask = boxes_at(0, [5.0, offset, 0.0, 5.0, 2.0])
        assert plan_collisions(straight_plan(), boxes, mask, EGO)[0, 0].item() is expected, offset


def test_masked_agents_never_collide():
    boxes, mask = boxes_at(2, [15.0, 0.0, 0.0, 5.0, 2.0])
    assert not plan_collisions(straight_plan(), boxes, torch.zeros_like(mask), EGO).any()


def test_rotated_agent_corner_case_by_hand():
    # A 45-degree agent (4 x 4 square -> a diamond of half-diagonal 2*sqrt(2) = 2.83 m) centred ahead of the
    # ego's front bumper (x = 7.5 at waypoint 0, ego box x in [2.5, 7.5]): its left corner reaches
    # x = centre - 2.83. Overlap iff centre - 2.83 < 7.5.
    for centre, expected in ((10.2, True), (10.4, False)):
        boxes, mask = boxes_at(0, [centre, 0.0, math.pi / 4, 4.0, 4.0])
        assert plan_collisions(straight_plan(), boxes, mask, EGO)[0, 0].item() is expected, centre


def test_ego_heading_follows_the_path_direction():
    # The plan turns left: waypoint 3 onwards go straight up (+y). An agent box 4.5 m wide across x sitting
    # beside the last waypoint only collides if the ego box there is rotated to point along +y.
    wp = torch.tensor([[[5.0, 0.0], [10.0, 0.0], [12.0, 2.0], [12.0, 7.0], [12.0, 12.0], [12.0, 17.0]]])
    heads = waypoint_headings(wp)[0]
    torch.testing.assert_close(
        heads, torch.tensor([0.0, 0.0, math.pi / 4, math.pi / 2, math.pi / 2, math.pi / 2])
    )
    # Agent centred 2.2 m to the right of the last waypoint, thin (0.5 m across x): with the ego along +y
    # (half-width 1.0) it is clear; an ego along +x (half-length 2.5) would hit it.
    boxes, mask = boxes_at(5, [14.2, 17.0, 0.0, 0.5, 3.0])
    assert not plan_collisions(wp, boxes, mask, EGO)[0, 5]
    boxes, mask = boxes_at(5, [13.2, 17.0, 0.0, 0.5, 3.0])
    assert plan_collisions(wp, boxes, mask, EGO)[0, 5]


def test_standing_still_keeps_the_initial_heading():
    wp = torch.zeros(1, 6, 2)
    assert torch.equal(waypoint_headings(wp), torch.zeros(1, 6))
    boxes, mask = boxes_at(4, [3.0, 0.0, 0.0, 2.0, 2.0])  # overlapping the parked ego's front
    assert plan_collisions(wp, boxes, mask, EGO)[0, 4]


def test_overlap_is_symmetric_and_batched():
    a = torch.tensor([[0.0, 0.0, 0.3, 4.0, 2.0], [0.0, 0.0, 0.0, 4.0, 2.0]])
    b = torch.tensor([[3.5, 1.0, 1.2, 4.0, 2.0], [10.0, 0.0, 0.0, 4.0, 2.0]])
    assert torch.equal(boxes_overlap(a, b), boxes_overlap(b, a))
    assert boxes_overlap(a, b).tolist() == [True, False]


def test_bad_shapes_raise_naming_the_field():
    boxes, mask = boxes_at(0, [5.0, 0.0, 0.0, 5.0, 2.0])
    with pytest.raises(ValueError, match="agent_mask"):
        plan_collisions(straight_plan(), boxes, mask.float(), EGO)
    with pytest.raises(ValueError, match="waypoints"):
        plan_collisions(torch.zeros(1, 6, 3), boxes, mask, EGO)
