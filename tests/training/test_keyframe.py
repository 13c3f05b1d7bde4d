"""Keyframe weighting of the AE's trajectory loss (`training.keyframe`): hand-computed speed changes,
the weighted mean it gives the heads' losses, and the stage that applies it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from heads import build_head
from tests.helpers import TINY_DIMS, TINY_REFINER, make_context, make_target
from tests.training.fakes import FakeDataModule
from training.keyframe import keyframe_weights, plan_speed_change
from training.optim import OptimConfig
from training.policy import BackboneSpec
from training.stages import ActionExpertStage


def _line(speeds_per_half_second: list[float]) -> torch.Tensor:
    """Waypoints (1, 6, 2) straight ahead, advancing by the given distances every 0.5 s."""
    x = torch.tensor(speeds_per_half_second).cumsum(0)
    return torch.stack([x, torch.zeros_like(x)], -1)[None]


def test_speed_change_by_hand():
    cruise = _line([5.0] * 6)  # 10 m/s
    brake = _line([3.0, 2.0, 1.0, 0.0, 0.0, 0.0])  # 5 m in the first second
    # A bend: (3, 4) at 0.5 s, (3, 10) at 1 s: a path of 5 + 6 = 11 m in the first second.
    bend = torch.tensor([[[3.0, 4.0], [3.0, 10.0], [3.0, 16.0], [3.0, 22.0], [3.0, 28.0], [3.0, 34.0]]])
    waypoints = torch.cat([cruise, brake, bend])
    speed = torch.tensor([10.0, 8.0, 10.0])
    assert torch.allclose(plan_speed_change(speed, waypoints), torch.tensor([0.0, -3.0, 1.0]), atol=1e-6)
    assert torch.allclose(keyframe_weights(speed, waypoints, 2.0), torch.tensor([1.0, 7.0, 3.0]), atol=1e-6)
    assert torch.equal(keyframe_weights(speed, waypoints, 0.0), torch.ones(3))


def test_bad_input_is_refused_by_name():
    with pytest.raises(ValueError, match="keyframe_weight"):
        keyframe_weights(torch.zeros(1), _line([1.0] * 6), -1.0)
    with pytest.raises(ValueError, match="waypoints"):
        plan_speed_change(torch.zeros(2), _line([1.0] * 6))  # batch 2 vs 1
    with pytest.raises(ValueError, match="keyframe_weight"):
        ActionExpertStage(keyframe_weight=-0.5)


def test_weighted_mlp_loss_is_the_weighted_mean_of_the_per_sample_losses():
    head = build_head("mlp", TINY_DIMS, hidden_dim=32)
    ctx, target = make_context(batch=3), make_target(batch=3)
    per_sample = []
    for i in range(3):  # a one-hot weight picks one sample's loss
        onehot = torch.zeros(3)
        onehot[i] = 1.0
        per_sample.append(head.loss(ctx, target, sample_weight=onehot)["loss"])
    per_sample = torch.stack(per_sample)
    assert len(set(per_sample.tolist())) == 3
    assert torch.allclose(per_sample.mean(), head.loss(ctx, target)["loss"], atol=1e-6)
    w = torch.tensor([7.0, 1.0, 3.0])
    want = (w * per_sample).sum() / w.sum()
    assert torch.allclose(head.loss(ctx, target, sample_weight=w)["loss"], want, atol=1e-6)


@pytest.mark.parametrize("name", ["diffusion", "student"])
def test_uniform_weights_leave_every_head_loss_unchanged(name):
    kwargs = {"refiner": TINY_REFINER} if name == "diffusion" else {"dim": 32, "depth": 1, "num_heads": 2}
    head = build_head(name, TINY_DIMS, **kwargs)
    ctx, target = make_context(batch=3), make_target(batch=3)

    def loss(**kw):
        return head.loss(ctx, target, generator=torch.Generator().manual_seed(0), **kw)["loss"]

    plain = loss()
    assert torch.allclose(loss(sample_weight=torch.full((3,), 4.0)), plain, atol=1e-5)
    assert not torch.allclose(loss(sample_weight=torch.tensor([50.0, 1.0, 1.0])), plain, atol=1e-5)


def test_the_stage_weights_its_trajectory_loss_by_the_labels_speed_change():
    torch.manual_seed(0)
    batch = next(iter(FakeDataModule(seed=0).train_dataloader()))  # constant-speed labels: weights 1
    speed = batch.sensors.ego_state[:, 0]
    braking = batch.waypoints.clone()
    braking[0] = batch.waypoints[0] * 0.5  # sample 0 halves its speed: change -speed/2
    braked = dataclasses.replace(batch, waypoints=braking)

    def stage(k):
        torch.manual_seed(0)
        return ActionExpertStage(backbone=BackboneSpec(seed=0), optim=OptimConfig(), keyframe_weight=k)

    plain, weighted = stage(0.0), stage(2.0)
    with torch.no_grad():
        # Constant-speed labels: every weight is 1, the loss is the unweighted one.
        assert torch.allclose(weighted.losses(batch)["loss"], plain.losses(batch)["loss"], atol=1e-5)
        got = weighted.losses(braked)["waypoint_l1"]
        out = plain.forward_ae(braked, with_plan=False)
        w = torch.ones(len(speed))
        w[0] = 1.0 + 2.0 * speed[0] / 2
        want = plain.ae.head.loss(out.context, plain.plan_target(braked), sample_weight=w)["waypoint_l1"]
        assert torch.allclose(got, want, atol=1e-5)
        assert not torch.allclose(got, plain.losses(braked)["waypoint_l1"], atol=1e-4)


def test_a_study_refuses_a_negative_weight_and_hands_its_weight_to_every_ae_training(tmp_path, monkeypatch):
    """`StudyConfig.keyframe_weight` reaches the AE stage of behaviour cloning and of a DAgger round."""
    from studies import tasks
    from studies.config import load_study_config

    with pytest.raises(ValueError, match=r"StudyConfig.keyframe_weight: expected a value >= 0, got -1"):
        load_study_config("smoke", {"keyframe_weight": -1})
    config = load_study_config("smoke", {"keyframe_weight": 1.5, "dagger": {"rounds": 1}})
    seen = []

    class Built(Exception):
        pass

    def fake_stage(**kwargs):
        seen.append(kwargs["keyframe_weight"])
        raise Built

    monkeypatch.setattr("training.stages.ActionExpertStage", fake_stage)
    for round_index in (0, 1):
        with pytest.raises(Built):
            tasks._ae(
                tmp_path, config, 0, round_index, tasks.StatusWriter(tmp_path, f"ae{round_index}", "ae")
            )
    assert seen == [1.5, 1.5]
