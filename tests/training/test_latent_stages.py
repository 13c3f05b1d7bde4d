"""The latent stages: label-free where they must be, resumable to identical weights, and the
fine-tuning stage's AE update is exactly the plain one when the latent head only follows."""

import lightning as L
import pytest
import torch

from driving.dataset import collate
from latent.config import LAMConfig, VQConfig
from latent.data import TransitionBatch, collate_transitions
from latent.lam import LatentActionModel, save_lam
from tests.training.fakes import FakeDataset, FakeTransitionDataModule, FakeTransitionDataset
from training.optim import OptimConfig
from training.policy import BackboneSpec
from training.stages import DistillStage, LAMStage, LatentFinetuneStage, LatentPretrainStage

TINY_LAM = dict(width=16, depth=1, num_heads=2, downsamples=2, vq=VQConfig(code_dim=8, restart_every=2))
TINY_STUDENT = {"dim": 32, "depth": 1, "num_heads": 2, "bev_channels": [8, 16]}


def _trainer(max_steps, tmp_path=None, **kw):
    return L.Trainer(
        max_steps=max_steps,
        limit_val_batches=0,
        deterministic=True,
        logger=False,
        enable_checkpointing=tmp_path is not None,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **kw,
    )


def _weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def lam_folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("lam") / "lam"
    save_lam(LatentActionModel(LAMConfig(**TINY_LAM), (32, 32)), path)
    return str(path)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, lam_folder):
    path = tmp_path_factory.mktemp("pre") / "policy"
    L.seed_everything(0)
    stage = LatentPretrainStage(lam=lam_folder, optim=OptimConfig(warmup_steps=1), export_dir=str(path))
    _trainer(2).fit(stage, datamodule=FakeTransitionDataModule())
    return str(path)


def _labeled_batch() -> TransitionBatch:
    return collate_transitions([FakeTransitionDataset(2, labels=True)[i] for i in range(2)])


@pytest.mark.parametrize("bad", ["labeled_transitions", "driving_batch"])
def test_label_free_stages_refuse_batches_with_labels(lam_folder, bad):
    batch = (
        _labeled_batch() if bad == "labeled_transitions" else collate([FakeDataset(2)[i] for i in range(2)])
    )
    lam_stage = LAMStage(lam=LAMConfig(**TINY_LAM), image_size=(32, 32))
    with pytest.raises(ValueError, match=r"LAMStage: expected observations-only batches"):
        lam_stage.training_step(batch, 0)
    pre = LatentPretrainStage(lam=lam_folder)
    with pytest.raises(ValueError, match=r"LatentPretrainStage: expected observations-only batches"):
        pre.training_step(batch, 0)


def test_lam_stage_trains_on_an_unlabeled_dataset_and_exports(unlabeled_dataset, tmp_path):
    from latent.datamodule import TransitionDataModule
    from latent.lam import load_lam

    L.seed_everything(0)
    config = LAMConfig(**{**TINY_LAM, "pool": 2})
    stage = LAMStage(lam=config, image_size=(64, 64), export_dir=str(tmp_path / "lam"))
    before = _weights(stage.lam)
    dm = TransitionDataModule(unlabeled_dataset, batch_size=8, offsets_s=(1.0,), sensors=False)
    _trainer(3).fit(stage, datamodule=dm)
    loaded = load_lam(tmp_path / "lam")
    after = _weights(loaded)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(after[k], v) for k, v in stage.lam.state_dict().items())


class _StopAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            trainer.should_stop = True


def _stage(kind: str, lam_folder: str, pretrained: str):
    opt = OptimConfig(warmup_steps=1)
    if kind == "lam":
        return LAMStage(lam=LAMConfig(**TINY_LAM), image_size=(32, 32), optim=opt), {"offsets": 1}
    if kind == "pretrain":
        return LatentPretrainStage(lam=lam_folder, optim=opt), {}
    if kind == "pretrain_plan":
        return LatentPretrainStage(lam=lam_folder, optim=opt, plan_weight=1.0), {}
    if kind == "finetune":
        return LatentFinetuneStage(backbone=BackboneSpec(init_from=pretrained), lam=lam_folder, optim=opt), {
            "labels": True
        }
    return DistillStage(teacher=pretrained, student=TINY_STUDENT, optim=opt, seed=0), {"labels": True}


def _trained(stage):
    return (
        stage.student
        if isinstance(stage, DistillStage)
        else stage.lam
        if isinstance(stage, LAMStage)
        else stage
    )


@pytest.mark.parametrize("kind", ["lam", "pretrain", "pretrain_plan", "finetune", "distill"])
def test_resume_from_a_mid_run_checkpoint_gives_the_same_weights(kind, lam_folder, pretrained, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    total, stop = 6, 3  # 4 batches per epoch: the stop is mid-epoch
    L.seed_everything(0, workers=True)
    full, data = _stage(kind, lam_folder, pretrained)
    _trainer(total).fit(full, datamodule=FakeTransitionDataModule(**data))
    L.seed_everything(0, workers=True)
    first, _ = _stage(kind, lam_folder, pretrained)
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=stop, save_top_k=-1)
    _trainer(total, tmp_path, callbacks=[ckpt, _StopAt(stop)]).fit(
        first, datamodule=FakeTransitionDataModule(**data)
    )
    path = next(tmp_path.glob(f"*step={stop}*.ckpt"))
    L.seed_everything(123, workers=True)  # the resumed process starts from another RNG state
    resumed, _ = _stage(kind, lam_folder, pretrained)
    _trainer(total, tmp_path / "r", callbacks=[ModelCheckpoint(dirpath=tmp_path / "r")]).fit(
        resumed, datamodule=FakeTransitionDataModule(**data), ckpt_path=path, weights_only=True
    )
    wf, wr = _weights(_trained(full)), _weights(_trained(resumed))
    assert wf.keys() == wr.keys() and all(torch.equal(wf[k], wr[k]) for k in wf)
    assert any(not torch.equal(wf[k], v) for k, v in _weights(_trained(first)).items())


def test_a_following_latent_head_leaves_the_ae_update_exactly_the_plain_one(lam_folder, pretrained):
    runs = {}
    for name, lam in (("with_head", lam_folder), ("plain", None)):
        L.seed_everything(0, workers=True)
        stage = LatentFinetuneStage(
            backbone=BackboneSpec(init_from=pretrained), lam=lam, optim=OptimConfig(warmup_steps=1)
        )
        head0 = None if stage.latent_head is None else _weights(stage.latent_head)
        _trainer(3).fit(stage, datamodule=FakeTransitionDataModule(labels=True))
        runs[name] = (_weights(stage.ae), head0, stage.latent_head)
    a, b = runs["with_head"][0], runs["plain"][0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    head0, head = runs["with_head"][1], runs["with_head"][2]
    assert any(not torch.equal(head0[k], v) for k, v in head.state_dict().items())  # the head did learn
    # With a latent weight the AE does see the latent loss (the comparison can fail).
    L.seed_everything(0, workers=True)
    mixed = LatentFinetuneStage(
        backbone=BackboneSpec(init_from=pretrained),
        lam=lam_folder,
        latent_weight=0.5,
        optim=OptimConfig(warmup_steps=1),
    )
    _trainer(3).fit(mixed, datamodule=FakeTransitionDataModule(labels=True))
    assert any(not torch.equal(a[k], v) for k, v in mixed.ae.state_dict().items())


def test_pretraining_learns_the_codes_and_distillation_leaves_the_teacher_alone(lam_folder, pretrained):
    L.seed_everything(0)
    stage = LatentPretrainStage(lam=lam_folder, optim=OptimConfig(lr=3e-3, warmup_steps=1))
    batch = collate_transitions([FakeTransitionDataset(8)[i] for i in range(8)])
    stage.on_fit_start()
    with torch.no_grad():
        before = stage.losses(batch)["loss"].item()
    _trainer(12).fit(stage, datamodule=FakeTransitionDataModule(n=8, batch_size=8))
    with torch.no_grad():
        after = stage.losses(batch)["loss"].item()
    assert after < 0.7 * before
    distill = DistillStage(teacher=pretrained, student=TINY_STUDENT, optim=OptimConfig(warmup_steps=1))
    teacher = _weights(distill.teacher.ae)
    _trainer(2).fit(distill, datamodule=FakeTransitionDataModule(labels=True))
    assert all(torch.equal(teacher[k], v) for k, v in distill.teacher.ae.state_dict().items())


def test_pretrained_lr_scale_slows_the_trunk_and_not_the_planning_head(lam_folder, pretrained):
    from training.policy import load_pretrained

    start = {k: v.detach().clone() for k, v in load_pretrained(pretrained).ae.named_parameters()}
    deltas = {}
    for scale in (1.0, 0.25):
        L.seed_everything(0, workers=True)
        stage = LatentFinetuneStage(
            backbone=BackboneSpec(init_from=pretrained),
            lam=lam_folder,
            pretrained_lr_scale=scale,
            optim=OptimConfig(warmup_steps=0),
        )
        _trainer(1).fit(stage, datamodule=FakeTransitionDataModule(labels=True))
        deltas[scale] = {k: v.detach() - start[k] for k, v in stage.ae.named_parameters() if k in start}
    plain, slow = deltas[1.0], deltas[0.25]
    trunk = [k for k in plain if not k.startswith("head.") and plain[k].abs().max() > 0]
    head = [k for k in plain if k.startswith("head.") and plain[k].abs().max() > 0]
    assert trunk and head
    for k in trunk:
        assert torch.allclose(slow[k], 0.25 * plain[k], rtol=1e-3, atol=1e-7), k  # float32 differences
    for k in head:
        assert torch.equal(slow[k], plain[k]), k
    with pytest.raises(ValueError, match=r"pretrained_lr_scale: expected > 0, got 0"):
        LatentFinetuneStage(backbone=BackboneSpec(init_from=pretrained), pretrained_lr_scale=0)


def test_future_speed_is_the_ego_speed_of_the_future_steps_and_reads_no_label(unlabeled_dataset):
    import numpy as np

    from driving.shards import OBSERVATION_FIELDS, read_shard
    from latent.data import TransitionDataset

    data = TransitionDataset(unlabeled_dataset, offsets_s=(1.0, 2.0, 3.0), future_speed=True)
    assert set(data.fields) <= set(OBSERVATION_FIELDS)  # the speed comes from observations only
    for i in (0, len(data) // 2, len(data) - 1):
        k, _, future = data.items[i]
        root, entry = data.episodes[k]
        shard = read_shard(root / entry["file"], fields=("ego_state",))
        item = data[i]
        expected = [shard["ego_state"][f, 0] if f >= 0 else 0.0 for f in future]
        np.testing.assert_allclose(item["future_speed"].numpy(), expected, rtol=0, atol=1e-6)
    batch = collate_transitions([data[0], data[1]])
    assert batch.future_speed.shape == (2, 3)
    with pytest.raises(ValueError, match=r"TransitionDataset\.future_speed: expected sensors=True"):
        TransitionDataset(unlabeled_dataset, future_speed=True, sensors=False)


def _with_speed(batch: TransitionBatch, speed: torch.Tensor) -> TransitionBatch:
    import dataclasses

    return dataclasses.replace(batch, future_speed=speed)


def test_the_speed_term_adds_the_masked_l1_of_the_speed_head(lam_folder):
    batch = collate_transitions([FakeTransitionDataset(3)[i] for i in range(3)])
    batch.future_mask[1, 2] = False  # a missing future: not in the mean
    speed = torch.tensor([[5.0, 6.0, 7.0], [1.0, 0.5, 0.0], [12.0, 12.0, 11.0]])
    torch.manual_seed(0)
    plain = LatentPretrainStage(lam=lam_folder)
    assert plain.speed_head is None
    torch.manual_seed(0)
    stage = LatentPretrainStage(lam=lam_folder, speed_weight=0.5)
    stage.eval()
    plain.eval()
    with torch.no_grad():
        parts = stage.losses(_with_speed(batch, speed))
        base = plain.losses(batch)
        latents = stage.forward_ae(batch, with_plan=False).context.decision_latents
        pred = stage.speed_head(latents).squeeze(-1)
    mask = batch.future_mask.float()
    l1 = ((pred - speed).abs() / 10.0 * mask).sum() / mask.sum()
    torch.testing.assert_close(parts["speed_l1"], l1)
    torch.testing.assert_close(parts["latent_nll"], base["loss"])  # same seed: the same AE and codes
    torch.testing.assert_close(parts["loss"], base["loss"] + 0.5 * l1)
    with pytest.raises(ValueError, match=r"expected batches read with future_speed=True"):
        stage.losses(batch)
    with pytest.raises(ValueError, match=r"LatentPretrainStage\.speed_weight: expected a number >= 0"):
        LatentPretrainStage(lam=lam_folder, speed_weight=-1.0)


@pytest.mark.parametrize("kind", ["pretrain", "finetune", "distill"])
def test_a_latent_stage_with_the_ue_store_trains_the_weights_of_one_without(
    kind, lam_folder, pretrained, tmp_path
):
    """The latent study's stages share the frozen UE's caches on disk (`training.ue_store`): the first
    fit with the store writes every sample, the second reads every sample, and both train the
    weights of a fit that prefilled everything itself."""
    opt = OptimConfig(warmup_steps=1)
    data = {"labels": kind != "pretrain", "shard": "ab" * 32}

    def stage(store):
        if kind == "pretrain":
            return LatentPretrainStage(lam=lam_folder, optim=opt, ue_store=store)
        if kind == "finetune":
            spec = BackboneSpec(init_from=pretrained)
            return LatentFinetuneStage(backbone=spec, lam=lam_folder, optim=opt, ue_store=store)
        return DistillStage(teacher=pretrained, student=TINY_STUDENT, optim=opt, seed=0, ue_store=store)

    weights, counts = [], []
    for store in (None, tmp_path / "store", tmp_path / "store"):
        L.seed_everything(0, workers=True)
        s = stage(store)
        _trainer(5).fit(s, datamodule=FakeTransitionDataModule(**data))
        weights.append(_weights(_trained(s)))
        if store is not None:
            counts.append((s.ue_memo.store.reads, s.ue_memo.store.writes))
    assert counts == [(0, 16), (16, 0)]  # 16 samples: written once, then read instead of prefilled
    assert all(torch.equal(weights[0][k], w[k]) for w in weights[1:] for k in weights[0])


def test_hiding_the_ego_token_keeps_it_out_of_pretraining(lam_folder):
    """With hidden=("ego",) no pretrained layer reads the ego token: the decision latents do not move
    when the ego state and history change (they do without hiding), the pretraining loss sends the
    ego encoder exactly zero gradient (only weight decay moves it), and every other AE part learns."""
    import dataclasses

    batch = collate_transitions([FakeTransitionDataset(3)[i] for i in range(3)])
    s = batch.sensors
    moved = dataclasses.replace(
        batch, sensors=dataclasses.replace(s, ego_state=s.ego_state + 3.0, ego_history=s.ego_history - 2.0)
    )
    torch.manual_seed(0)
    stage = LatentPretrainStage(lam=lam_folder, hidden=("ego",), optim=OptimConfig(warmup_steps=1))
    stage.eval()
    with torch.no_grad():

        def decision(b, hidden):
            return stage.forward_ae(b, with_plan=False, hidden=hidden).context.decision_latents

        torch.testing.assert_close(decision(moved, ("ego",)), decision(batch, ("ego",)), rtol=0, atol=0)
        assert not torch.allclose(decision(moved, ()), decision(batch, ()))
    stage.train()
    stage.losses(batch)["loss"].backward()
    grads = {k: p.grad for k, p in stage.ae.named_parameters()}
    ego = [k for k in grads if k.startswith("state_tokens.ego.")]
    assert ego and all(grads[k] is None or not grads[k].any() for k in ego)
    assert grads["decision_queries"].abs().sum() > 0
    assert grads["state_tokens.target.0.weight"].abs().sum() > 0
    plain = LatentPretrainStage(lam=lam_folder)  # without hiding, the ego encoder learns
    plain.losses(batch)["loss"].backward()
    assert plain.ae.state_tokens.ego[0].weight.grad.abs().sum() > 0
    from mot.action_expert import HIDEABLE_TOKENS

    assert set(HIDEABLE_TOKENS) == {*stage.ae.slices, "ego"}  # the config's list is the AE's groups
    with pytest.raises(ValueError, match=r"hidden: expected a segment name in .* or 'ego', got 'egos'"):
        LatentPretrainStage(lam=lam_folder, hidden=("egos",))
    with pytest.raises(ValueError, match=r"LatentPretrainStage\.hidden: expected a list"):
        LatentPretrainStage(lam=lam_folder, hidden="ego")


def test_plan_weight_trains_the_waypoint_queries_on_the_codes_of_their_transition(lam_folder):
    """With plan_weight the waypoint queries predict the LAM code of the transition their time falls
    in: the term is the cross-entropy of a head of their own, computed here by hand; the decision
    term and every shared weight are those of a stage without it; and the planning queries, which
    the decision readout never reaches, get a gradient only with it."""
    import math

    import torch.nn.functional as F

    from automot import spec
    from latent.latent_head import IGNORE_INDEX
    from training.stages.latent_pretrain import lam_targets, waypoint_transitions

    assert waypoint_transitions(1.0) == (0, 0, 1, 1, 2, 2)  # 0.5, 1.0 | 1.5, 2.0 | 2.5, 3.0 s
    batch = collate_transitions([FakeTransitionDataset(3)[i] for i in range(3)])
    batch.future_mask[1, 2] = False  # the third transition of sample 1 has no target
    torch.manual_seed(0)
    plain = LatentPretrainStage(lam=lam_folder)
    torch.manual_seed(0)
    stage = LatentPretrainStage(lam=lam_folder, plan_weight=0.5)
    shared = stage.state_dict()
    assert all(torch.equal(v, shared[k]) for k, v in plain.state_dict().items())
    assert not any(k.startswith("plan_latent_head.") for k in plain.state_dict())
    stage.eval()
    plain.eval()
    with torch.no_grad():
        parts = stage.losses(batch)
        base = plain.losses(batch)
        codes = lam_targets(stage.lam, batch.frames, batch.future_mask)
        waypoints = stage.forward_ae(batch, with_plan=False).context.plan_latents[:, : spec.NUM_WAYPOINTS]
        logits = stage.plan_latent_head(waypoints)  # (B, 6, M, V)
    nll, n = 0.0, 0
    for i, t in enumerate(spec.waypoint_times_s()):
        k = math.ceil(t) - 1  # H = 1 s
        target = codes[:, k]  # (B, M)
        keep = target != IGNORE_INDEX
        nll += F.cross_entropy(logits[:, i][keep], target[keep], reduction="sum")
        n += int(keep.sum())
    assert n == 3 * 6 * codes.shape[-1] - 2 * codes.shape[-1]  # two waypoints fall in the missing one
    torch.testing.assert_close(parts["plan_nll"], nll / n)
    torch.testing.assert_close(parts["decision_nll"], base["loss"])
    torch.testing.assert_close(parts["loss"], base["loss"] + 0.5 * nll / n)

    stage.train()
    plain.train()
    stage.losses(batch)["loss"].backward()
    plain.losses(batch)["loss"].backward()
    assert stage.ae.plan_queries.grad.abs().sum() > 0
    assert plain.ae.plan_queries.grad is None or not plain.ae.plan_queries.grad.any()
    for bad in (-1.0, "1", True):
        with pytest.raises(ValueError, match=r"LatentPretrainStage\.plan_weight: expected a number >= 0"):
            LatentPretrainStage(lam=lam_folder, plan_weight=bad)


def test_plan_weight_pretraining_exports_a_teacher_without_its_plan_head(lam_folder, tmp_path):
    """The plan readout's head trains with the AE (its weights move); the exported teacher holds the
    AE and the decision-query latent head only, and loads into a fine-tuning stage as any other."""
    from latent.latent_head import load_latent_head

    L.seed_everything(0)
    out = tmp_path / "teacher"
    stage = LatentPretrainStage(
        lam=lam_folder, plan_weight=1.0, optim=OptimConfig(warmup_steps=1), export_dir=str(out)
    )
    before = _weights(stage.plan_latent_head)
    _trainer(3).fit(stage, datamodule=FakeTransitionDataModule())
    after = _weights(stage.plan_latent_head)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert not any("plan" in p.name for p in out.iterdir())
    exported = load_latent_head(out).state_dict()
    assert all(torch.equal(v, stage.latent_head.state_dict()[k]) for k, v in exported.items())
    LatentFinetuneStage(backbone=BackboneSpec(init_from=str(out)), lam=lam_folder)
