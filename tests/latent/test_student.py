"""The distilled student: runs alone (no UE is ever constructed), plans in `Plan`'s shapes, reads the
teacher's embeddings only for the samples told to, round-trips through its folder; its decoder is a
registered planning head that also works on the action expert."""

import pytest
import torch

from automot import spec
from automot.types import SensorBatch
from heads import available_heads
from latent.student import StudentConfig, StudentPlanner, load_student, save_student
from mot.bench import synthetic_observations
from training.policies import load_policy, policy_kind

CONFIG = dict(
    dim=32,
    depth=1,
    num_heads=2,
    bev_channels=(8, 16),
    teacher_tokens=5,
    teacher_dim=12,
    latent_tokens=4,
    codebook_size=16,
)


def _obs(n=3):
    return synthetic_observations(n, frames=4, views=1, image_size=32, bev_size=64, seed=0)


def test_the_student_runs_without_any_ue(tmp_path, monkeypatch):
    import mot.understanding as understanding

    save_student(StudentPlanner(StudentConfig(**CONFIG)), tmp_path / "student")

    def no_ue(*args, **kwargs):
        raise AssertionError("an understanding expert was constructed")

    monkeypatch.setattr(understanding.FrozenQwen3VLExpert, "__init__", no_ue)
    monkeypatch.setattr(understanding.FrozenQwen3VLExpert, "from_config", no_ue)
    assert policy_kind(tmp_path / "student") == "student"
    policy = load_policy(tmp_path / "student")
    policy.reset(None)
    out = policy.plan(_obs(1)[0])
    assert out.waypoints.shape == (spec.NUM_WAYPOINTS, 2) and out.route.shape == (spec.NUM_ROUTE_POINTS, 2)
    assert not any("understanding" in type(m).__module__ for m in policy.student.modules())


def test_plan_shapes_match_plan_and_outputs_are_per_sample():
    student = StudentPlanner(StudentConfig(**CONFIG)).eval()
    batch = SensorBatch.from_observations(_obs(3))
    with torch.no_grad():
        out = student(batch)
        alone = student(batch.select([1]))
    assert out.plan.waypoints.shape == (3, spec.NUM_WAYPOINTS, 2) and out.plan.route.shape == (
        3,
        spec.NUM_ROUTE_POINTS,
        2,
    )
    assert out.lateral_logits.shape == (3, 3, 5) and out.longitudinal_logits.shape == (3, 3, 4)
    assert out.latent_logits.shape == (3, 3, 4, 16) and out.predicted_teacher.shape == (3, 5, 12)
    assert torch.allclose(out.plan.waypoints[1:2], alone.plan.waypoints, atol=1e-5)


def test_teacher_embeddings_reach_only_the_forced_samples():
    student = StudentPlanner(StudentConfig(**CONFIG)).eval()
    batch = SensorBatch.from_observations(_obs(3))
    teacher = torch.randn(3, 5, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        own = student(batch).plan.waypoints
        none = student(
            batch, teacher_tokens=teacher, use_teacher=torch.tensor([False, False, False])
        ).plan.waypoints
        one = student(
            batch, teacher_tokens=teacher, use_teacher=torch.tensor([False, True, False])
        ).plan.waypoints
    assert torch.equal(own, none)
    assert torch.equal(one[[0, 2]], own[[0, 2]]) and not torch.allclose(one[1], own[1])


def test_student_folder_round_trip(tmp_path):
    student = StudentPlanner(StudentConfig(**CONFIG, seed=5)).eval()
    save_student(student, tmp_path / "s")
    loaded = load_student(tmp_path / "s")
    batch = SensorBatch.from_observations(_obs(2))
    with torch.no_grad():
        assert torch.equal(student(batch).plan.route, loaded(batch).plan.route)
    with pytest.raises(ValueError, match=r"teacher_tokens / teacher_dim: expected both > 0 or both 0"):
        StudentConfig(teacher_tokens=3)


def test_the_student_decoder_is_a_head_on_the_action_expert():
    from training.policy import BackboneSpec, with_head

    assert "student" in available_heads()
    backbone = BackboneSpec().build()
    with_head(backbone.ae, "student", {"dim": 32, "depth": 1, "num_heads": 2})
    batch = SensorBatch.from_observations(_obs(2))
    out = backbone(batch)
    assert out.plan.waypoints.shape == (2, spec.NUM_WAYPOINTS, 2) and out.plan.route.shape == (
        2,
        spec.NUM_ROUTE_POINTS,
        2,
    )
    # It reads the UE's hidden states as keys/values: changing them changes the plan.
    cache = backbone.prefill(batch)
    ctx = backbone.ae(batch, cache, with_plan=False).context
    plan = backbone.ae.head(ctx).waypoints
    ctx.reasoning_tokens = torch.randn(ctx.reasoning_tokens.shape, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(backbone.ae.head(ctx).waypoints, plan)


def test_student_identity_follows_its_weights(tmp_path):
    from latent.policy import StudentPolicy

    student = StudentPlanner(StudentConfig(**CONFIG, seed=5)).eval()
    save_student(student, tmp_path / "s")
    base = StudentPolicy(student).identity()
    assert StudentPolicy.from_pretrained(tmp_path / "s").identity() == base  # reloaded: the same
    assert StudentPolicy(StudentPlanner(StudentConfig(**CONFIG, seed=6))).identity() != base
    with torch.no_grad():
        student.plan_queries.view(-1)[0] += 1e-6
    assert StudentPolicy(student).identity() != base
