"""Metrics against hand-computed numbers."""

import math

import pytest
import torch

from training import functional as F
from training.metrics import CollisionRate, DecisionAccuracy, PlanL2


def _plans():
    target = torch.zeros(2, 6, 2)
    pred = torch.zeros(2, 6, 2)
    # Sample 0: errors 0.1, 0.2, ..., 0.6 m along x. Sample 1: 3-4-5 triangle (5 m) at the last point only.
    pred[0, :, 0] = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    pred[1, 5] = torch.tensor([3.0, 4.0])
    return pred, target


def test_l2_protocols_by_hand():
    pred, target = _plans()
    uniad = F.l2_per_horizon(pred, target, "uniad")
    # Horizons 1 s, 2 s, 3 s are waypoints 1, 3, 5 (0-based).
    assert torch.allclose(uniad, torch.tensor([[0.2, 0.4, 0.6], [0.0, 0.0, 5.0]]))
    stp3 = F.l2_per_horizon(pred, target, "stp3")
    assert torch.allclose(stp3, torch.tensor([[0.15, 0.25, 0.35], [0.0, 0.0, 5.0 / 6.0]]))
    s = F.l2_summary(pred, target, "uniad")
    assert math.isclose(s["l2_3s"], 2.8, rel_tol=1e-6) and math.isclose(
        s["l2_avg"], (0.1 + 0.2 + 2.8) / 3, rel_tol=1e-6
    )


def test_l2_metric_accumulates_like_one_big_batch():
    pred, target = _plans()
    m = PlanL2("stp3")
    m.update(pred[:1], target[:1])
    m.update(pred[1:], target[1:])
    out = m.compute()
    assert torch.isclose(out["l2_1s"].float(), torch.tensor(0.075))
    assert torch.isclose(out["l2_3s"].float(), torch.tensor((0.35 + 5 / 6) / 2))
    assert torch.isclose(out["l2_avg"].float(), torch.tensor((0.075 + 0.125 + (0.35 + 5 / 6) / 2) / 3))


def test_collision_protocols_by_hand():
    collided = torch.tensor(
        [[False, False, True, False, False, False], [False, False, False, False, False, True]]
    )
    assert torch.equal(
        F.collision_per_horizon(collided, "uniad"), torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    )
    stp3 = F.collision_per_horizon(collided, "stp3")
    assert torch.allclose(stp3, torch.tensor([[0.0, 0.25, 1 / 6], [0.0, 0.0, 1 / 6]]))
    m = CollisionRate("uniad")
    m.update(collided)
    assert torch.isclose(m.compute()["collision_3s"].float(), torch.tensor(0.5))


def test_decision_accuracy_by_hand():
    # 2 samples x 3 horizons; lateral 5 classes, longitudinal 4.
    lat_t = torch.tensor([[2, 2, 0], [1, 3, 3]])
    lon_t = torch.tensor([[0, 1, 2], [3, 3, 3]])
    lat_pred = torch.tensor([[2, 2, 1], [1, 0, 3]])  # right: (T,T,F), (T,F,T)
    lon_pred = torch.tensor([[0, 0, 2], [3, 3, 3]])  # right: (T,F,T), (T,T,T)
    lat_logits = torch.nn.functional.one_hot(lat_pred, 5).float()
    lon_logits = torch.nn.functional.one_hot(lon_pred, 4).float()
    m = DecisionAccuracy()
    m.update(lat_logits, lon_logits, lat_t, lon_t)
    out = {k: float(v) for k, v in m.compute().items()}
    assert out["acc_lateral_1s"] == 1.0 and out["acc_lateral_2s"] == 0.5 and out["acc_lateral_3s"] == 0.5
    assert out["acc_longitudinal_2s"] == 0.5 and out["acc_longitudinal_3s"] == 1.0
    # Joint: (T,F,F), (T,F,T)
    assert out["acc_joint_1s"] == 1.0 and out["acc_joint_2s"] == 0.0 and out["acc_joint_3s"] == 0.5
    assert math.isclose(out["acc_joint"], 0.5)


def test_decision_accuracy_without_lateral_reports_only_longitudinal():
    m = DecisionAccuracy()
    m.update(
        None,
        torch.nn.functional.one_hot(torch.tensor([[0, 1, 2]]), 3).float(),
        None,
        torch.tensor([[0, 1, 1]]),
    )
    out = m.compute()
    assert set(out) == {
        "acc_longitudinal_1s",
        "acc_longitudinal_2s",
        "acc_longitudinal_3s",
        "acc_longitudinal",
    }
    assert math.isclose(float(out["acc_longitudinal"]), 2 / 3)


def test_bad_input_names_the_field():
    with pytest.raises(ValueError, match=r"protocol: expected one of \['stp3', 'uniad'\], got 'nuscenes'"):
        PlanL2("nuscenes")
    with pytest.raises(ValueError, match=r"target: expected shape \(B, Nw, 2\) with B=2"):
        F.l2_per_horizon(torch.zeros(2, 6, 2), torch.zeros(3, 6, 2))
    with pytest.raises(ValueError, match=r"lateral_target: expected \(B, K\) class indices"):
        F.decision_correct(
            torch.zeros(1, 3, 5), torch.zeros(1, 3, 4), None, torch.zeros(1, 3, dtype=torch.long)
        )
