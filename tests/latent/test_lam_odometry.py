"""The LAM's odometry option: the ego speed at both ends of a transition is observed, the FDM must
predict the speed change from the codes, so the codes carry what the frames cannot show."""

import numpy as np
import pytest
import torch

from latent.config import LAMConfig, VQConfig
from latent.lam import LatentActionModel
from latent.probe import probe_scores
from latent.toy import planted_transitions

TINY = dict(width=16, depth=1, num_heads=2, downsamples=2, vq=VQConfig(code_dim=8))
CHANGES = (-2.0, -0.7, 0.7, 2.0)  # planted speed changes over a transition (m/s)


def hidden_speed_changes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Transitions whose frames do not move at all (planted action 0: future == obs) while the ego's
    speed changes by one of CHANGES: (obs, future, speeds (n, 2), change class (n,))."""
    obs, future, _ = planted_transitions(n, num_actions=1, size=16, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    now = 5.0 + 20.0 * torch.rand(n, generator=g)
    cls = torch.randint(0, len(CHANGES), (n,), generator=g)
    speeds = torch.stack((now, now + torch.tensor(CHANGES)[cls]), dim=1)
    return obs, future, speeds, cls


def train(lam: LatentActionModel, steps: int) -> LatentActionModel:
    opt = torch.optim.Adam(lam.parameters(), lr=3e-3)
    lam.train()
    for step in range(steps):
        obs, future, speeds, _ = hidden_speed_changes(32, seed=step)
        loss = lam(obs, future, speeds if lam.config.odometry else None).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lam.eval()


def probe(lam: LatentActionModel) -> float:
    obs, future, speeds, cls = hidden_speed_changes(512, seed=10**6)
    codes = lam.codes(obs, future, speeds if lam.config.odometry else None)
    scores = probe_scores(
        codes[:256], cls[:256], codes[256:], cls[256:], codebook_size=lam.vq.size, num_classes=len(CHANGES)
    )
    return scores["accuracy"]


def test_codes_carry_a_speed_change_the_frames_do_not_show_only_with_odometry():
    # The toy's frames are copied exactly (reconstruction near 0), so a weight of 1 balances the terms.
    odometry = LAMConfig(**TINY, odometry=True, odometry_weight=1.0)
    with_odometry = train(LatentActionModel(odometry, (16, 16)), 250)
    without = train(LatentActionModel(LAMConfig(**TINY), (16, 16)), 250)
    assert probe(with_odometry) >= 0.9
    assert probe(without) <= 0.4  # 4 balanced classes: the frames carry nothing about them
    obs, future, speeds, _ = hidden_speed_changes(256, seed=10**6 + 7)
    with torch.no_grad():
        out = with_odometry(obs, future, speeds)
    change = speeds[:, 1] - speeds[:, 0]
    rmse = float((out.speed_change - change).pow(2).mean().sqrt())
    assert rmse < 0.3 * float(change.pow(2).mean().sqrt())  # well under the no-change baseline
    assert torch.allclose(out.speed_loss, 1.0 * (out.speed_change - change).pow(2).mean())
    assert torch.allclose(out.loss, out.recon_loss + out.vq.loss + out.speed_loss)


def test_a_lam_without_odometry_is_built_exactly_as_before():
    plain = LatentActionModel(LAMConfig(**TINY, seed=2), (16, 16))
    odo = LatentActionModel(LAMConfig(**TINY, seed=2, odometry=True), (16, 16))
    extra = set(odo.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith(("odometry_token.", "speed_head.")) for k in extra)
    for name, value in plain.state_dict().items():
        assert torch.equal(value, odo.state_dict()[name]), name  # the new modules are drawn last
    obs, future, _ = planted_transitions(4, size=16, seed=3)
    out = plain(obs, future)
    assert out.speed_change is None and float(out.speed_loss) == 0.0


def test_sequence_codes_pair_consecutive_speeds():
    lam = LatentActionModel(LAMConfig(**TINY, odometry=True), (16, 16)).eval()
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(3, 4, 4, 16, 16, generator=g)
    speeds = 10 * torch.rand(3, 4, generator=g)
    seq = lam.sequence_codes(frames, speeds)
    for k in range(3):
        pair = torch.stack((speeds[:, k], speeds[:, k + 1]), dim=1)
        assert torch.equal(seq[:, k], lam.codes(frames[:, k], frames[:, k + 1], pair))
    # The speeds matter: other speeds give other codes for some transitions.
    assert not torch.equal(seq, lam.sequence_codes(frames, speeds.flip(1)))


def test_speeds_are_required_exactly_when_the_lam_reads_odometry():
    obs, future, _ = planted_transitions(2, size=16, seed=0)
    odo = LatentActionModel(LAMConfig(**TINY, odometry=True), (16, 16))
    plain = LatentActionModel(LAMConfig(**TINY), (16, 16))
    with pytest.raises(ValueError, match=r"speeds: expected \(B, 2\).*got None"):
        odo(obs, future)
    with pytest.raises(ValueError, match="speeds"):
        odo(obs, future, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="speeds: expected None for a LAM without odometry"):
        plain(obs, future, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="odometry"):
        plain.predict_speed_change(torch.zeros(2, 4, 8), torch.zeros(2))
    with pytest.raises(ValueError, match=r"LAMConfig\.odometry: expected true or false"):
        LAMConfig(odometry="yes")
    with pytest.raises(ValueError, match=r"LAMConfig\.odometry_weight"):
        LAMConfig(odometry=True, odometry_weight=0.0)
    with pytest.raises(ValueError, match=r"LAMConfig\.odometry_weight: expected a number > 0, got 'ten'"):
        LAMConfig(odometry=True, odometry_weight="ten")


def test_transition_speeds_are_the_ego_states_speed_and_read_no_label(unlabeled_dataset):
    from automot import spec
    from driving.shards import OBSERVATION_FIELDS, read_shard
    from latent.data import TransitionDataset, collate_transitions

    data = TransitionDataset(
        unlabeled_dataset, offsets_s=(1.0, 2.0), sensors=False, speeds=True, require_future=False
    )
    assert "ego_state" in data.fields and set(data.fields) <= set(OBSERVATION_FIELDS)
    k_speed = spec.EGO_STATE_FIELDS.index("speed")
    missing = 0
    for i in (0, len(data) // 2, len(data) - 5, len(data) - 1):
        k, row, future = data.items[i]
        root, entry = data.episodes[k]
        shard = read_shard(root / entry["file"], fields=("ego_state",))
        expected = [shard["ego_state"][r, k_speed] if r >= 0 else 0.0 for r in (row, *future)]
        np.testing.assert_allclose(data[i]["speeds"].numpy(), expected, rtol=0, atol=1e-6)
        missing += sum(r < 0 for r in future)
    assert missing > 0  # the episode's last steps have no 2 s future: their speed reads 0
    batch = collate_transitions([data[0], data[1]])
    assert batch.speeds.shape == (2, 3) and batch.sensors is None and batch.driving is None


def test_lam_stage_with_odometry_trains_on_speeds_and_refuses_batches_without(unlabeled_dataset, tmp_path):
    import lightning as L

    from latent.datamodule import TransitionDataModule
    from latent.lam import load_lam
    from latent.quality import lam_quality
    from training.stages import LAMStage

    L.seed_everything(0)
    config = LAMConfig(**TINY, pool=2, odometry=True)
    stage = LAMStage(lam=config, image_size=(64, 64), export_dir=str(tmp_path / "lam"))
    plain = TransitionDataModule(unlabeled_dataset, batch_size=4, sensors=False)
    plain.setup()
    batch = next(iter(plain.train_dataloader()))
    with pytest.raises(ValueError, match="expected batches read with speeds=True"):
        stage.training_step(batch, 0)
    dm = TransitionDataModule(unlabeled_dataset, unlabeled_dataset, batch_size=8, sensors=False, speeds=True)
    trainer = L.Trainer(
        max_steps=3, limit_val_batches=1, val_check_interval=3, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(stage, datamodule=dm)
    logged = trainer.callback_metrics
    assert float(logged["val/speed_rmse"]) > 0 and float(logged["val/speed_zero_rmse"]) > 0
    lam = load_lam(tmp_path / "lam")
    assert lam.config.odometry
    quality = lam_quality(lam, unlabeled_dataset)
    change = quality["speed_change"]
    assert change["rmse"] > 0 and change["zero_rmse"] > 0


def test_pretraining_targets_of_an_odometry_lam_use_the_batch_speeds(tmp_path):
    import dataclasses

    from latent.data import collate_transitions
    from latent.lam import save_lam
    from tests.training.fakes import FakeTransitionDataset
    from training.stages import LatentPretrainStage
    from training.stages.latent_pretrain import lam_targets

    lam = LatentActionModel(LAMConfig(**TINY, odometry=True), (32, 32))
    save_lam(lam, tmp_path / "lam")
    stage = LatentPretrainStage(lam=str(tmp_path / "lam")).eval()
    batch = collate_transitions([FakeTransitionDataset(3)[i] for i in range(3)])
    with pytest.raises(ValueError, match="expected batches read with speeds=True"):
        stage.losses(batch)
    speeds = torch.tensor([[5.0, 6.0, 7.0, 8.0], [1.0, 0.5, 0.0, 0.0], [12.0, 12.0, 11.0, 9.0]])
    batch = dataclasses.replace(batch, speeds=speeds)
    with torch.no_grad():
        parts = stage.losses(batch)
        expected = lam_targets(stage.lam, batch.frames, batch.future_mask, speeds)
    assert torch.equal(expected, stage.lam.sequence_codes(batch.frames, speeds))
    assert torch.isfinite(parts["loss"])
