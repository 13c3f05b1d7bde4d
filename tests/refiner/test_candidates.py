"""Multi-modal candidates: mode anchors, the score head's selection, and mode-start training."""

import pytest
import torch

from heads import PlanTarget, build_head
from refiner.anchors import AnchorConfig, mode_anchors
from refiner.selection import predicted_cost, select_candidate
from tests.helpers import TINY_DIMS, TINY_REFINER, make_context, make_target


def _straight(b=2):
    t = 0.5 * torch.arange(1, 7).float()
    wp = torch.stack([10.0 * t, torch.zeros(6)], -1).expand(b, -1, -1).clone()
    s = 2.0 * torch.arange(1, 21).float()
    route = torch.stack([s, torch.zeros(20)], -1).expand(b, -1, -1).clone()
    return wp, route


def test_mode_anchors_are_the_prior_shifted_a_lane_and_rescaled_in_speed():
    config = AnchorConfig(lane_width_m=4.0, lane_change_s=3.0, lane_change_m=40.0, speed_factor=0.2)
    wp, route = _straight()
    a_wp, a_route = mode_anchors(wp, route, config)
    assert a_wp.shape == (2, 9, 6, 2) and a_route.shape == (2, 9, 20, 2)
    names = config.names
    assert names[0] == "keep/keep"
    assert torch.equal(a_wp[:, 0], wp) and torch.equal(a_route[:, 0], route)
    left, right = names.index("left/keep"), names.index("right/keep")
    # Full lane width reached at 3 s (last waypoint) and from 40 m on along the route; smooth before.
    assert torch.allclose(a_wp[:, left, -1, 1], torch.full((2,), 4.0))
    assert torch.allclose(a_wp[:, right, -1, 1], torch.full((2,), -4.0))
    assert torch.allclose(a_route[:, left, 19, 1], torch.full((2,), 4.0))  # 40 m ahead
    assert 0 < float(a_route[0, left, 4, 1]) < 4.0  # 10 m ahead: part way
    assert bool((a_wp[:, left, 1:, 1] >= a_wp[:, left, :-1, 1]).all())  # monotone ramp
    faster, slower = names.index("keep/faster"), names.index("keep/slower")
    assert torch.allclose(a_wp[:, faster], 1.2 * wp) and torch.allclose(a_wp[:, slower], 0.8 * wp)
    assert torch.equal(a_route[:, faster], route)  # a route is a path: speed leaves it alone


def test_scorer_selection_picks_the_lowest_predicted_cost():
    wp = torch.arange(3.0)[None, :, None, None].expand(2, 3, 6, 2)
    route = torch.zeros(2, 3, 20, 2)
    scores = torch.tensor(
        [[[0.3, -10.0], [0.1, 10.0], [0.2, -10.0]], [[0.5, -10.0], [0.4, -10.0], [0.45, -10.0]]]
    )
    chosen, _ = select_candidate(wp, route, "scorer", scores, collision_weight=1.0)
    # Sample 0: candidate 1 has the lowest L1 but a likely collision; candidate 2 wins.
    assert chosen[0, 0, 0] == 2.0 and chosen[1, 0, 0] == 1.0
    assert torch.allclose(predicted_cost(scores, 0.0), scores[..., 0])
    with pytest.raises(ValueError, match="scorer"):
        select_candidate(wp, route, "scorer", None)


def test_mode_candidates_start_from_their_anchors():
    torch.manual_seed(0)
    head = build_head(
        "diffusion", TINY_DIMS, refiner=TINY_REFINER, denoiser={"candidates": "modes", "selection": "first"}
    )
    plan = head(make_context(), num_samples=9)
    anchors_wp, _ = mode_anchors(plan.prior_waypoints, plan.prior_route, head.config.denoiser.anchors)
    # An untrained refiner returns every candidate's own anchor, exactly.
    assert torch.allclose(plan.waypoint_samples, anchors_wp, atol=1e-5)
    assert torch.allclose(plan.waypoints, plan.prior_waypoints, atol=1e-5)  # "first" = the prior's
    with pytest.raises(ValueError, match="at most 9"):
        head(make_context(), num_samples=10)


def test_mode_start_training_regresses_only_the_prior_and_the_nearest_mode():
    torch.manual_seed(0)
    head = build_head("diffusion", TINY_DIMS, refiner=TINY_REFINER, denoiser={"train_mode_prob": 1.0})
    dn = head.denoiser
    prior = head.prior(make_context())
    target = make_target()
    # The expert is the prior moved a lane to the left: that mode is the nearest anchor.
    anchors = dn.anchors(prior.waypoints, prior.route)
    left = head.config.denoiser.anchors.names.index("left/keep")
    target_wp, target_route = dn.denormalize(anchors[:, left])
    weights, picked = [], []
    for seed in range(40):
        out = dn.training_prediction(
            prior.waypoints,
            prior.route,
            head.encode(make_context()),
            torch.Generator().manual_seed(seed),
            target_waypoints=target_wp,
            target_route=target_route,
        )
        weights.append(out.regression_weight)
        # An untrained refiner returns its start anchor: recover which anchor each sample got.
        est = dn.normalize(*out.estimates[0])
        picked.append((est[:, None] - anchors).abs().mean((-1, -2)).argmin(1))
    weights, picked = torch.stack(weights), torch.stack(picked)
    assert torch.equal(weights, ((picked == 0) | (picked == left)).float())
    assert len(set(picked.flatten().tolist())) > 5  # random anchors are drawn
    del target


def test_score_head_learns_collision_labels_from_the_target_agents():
    torch.manual_seed(0)
    head = build_head("diffusion", TINY_DIMS, refiner=TINY_REFINER)
    target = make_target()
    b = target.waypoints.shape[0]
    boxes = torch.zeros(b, 6, 1, 5)
    boxes[..., 0, 0] = target.waypoints[..., 0]  # an agent sitting on every expert waypoint
    boxes[..., 3:] = torch.tensor([4.0, 2.0])
    with_agents = PlanTarget(
        target.waypoints, target.route, boxes, torch.ones(b, 6, 1, dtype=torch.bool), torch.full((b, 2), 2.0)
    )
    out = head.loss(make_context(), with_agents, generator=torch.Generator().manual_seed(0))
    assert "score_collision" in out and "score_collision" not in head.loss(make_context(), target)
    out["loss"].backward()
    assert head.denoiser.network.score_head[-1].weight.grad.abs().sum() > 0
