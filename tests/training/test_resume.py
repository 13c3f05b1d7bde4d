"""Resume: a refiner fit killed mid-training and resumed from its last checkpoint ends bit-for-bit
with the weights and EMA weights of an uninterrupted fit (its training noise comes from (train_seed,
global_step), not from the process's global RNG; the EMA is updated before the step's checkpoint), and its CSV log is continued in the same version folder with
exactly the rows of the uninterrupted run."""

import csv

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from tests.training.fakes import FakeDataModule
from training.optim import OptimConfig
from training.policy import BackboneSpec, save_pretrained
from training.run_folders import LogVersions, resume_fit_folders
from training.stages import ActionExpertStage, RefinerStage

TINY_HEAD = {"refiner": {"dim": 32, "depth": 1, "moa": {"num_heads": 4}}}
STEPS, EVERY, KILL_AT = 12, 4, 6


class _Killed(Exception):
    pass


class _KillAt(L.Callback):
    """kill -9 at a step: from this moment nothing more reaches the disk (no logger flush, no teardown save)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            for logger in trainer.loggers:
                logger.save = logger.finalize = lambda *a, **k: None
            raise _Killed


def _trainer(root, *callbacks):
    return L.Trainer(
        max_steps=STEPS,
        limit_val_batches=0,
        deterministic=True,
        accelerator="cpu",
        logger=CSVLogger(save_dir=str(root), name="refiner"),
        log_every_n_steps=1,
        callbacks=[
            ModelCheckpoint(dirpath=str(root / "ckpt"), every_n_train_steps=EVERY, save_last=True),
            LogVersions(),
            *callbacks,
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
    )


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    L.seed_everything(0, workers=True)
    stage = ActionExpertStage(backbone=BackboneSpec(seed=0), optim=OptimConfig(warmup_steps=1))
    L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, limit_val_batches=0, accelerator="cpu").fit(stage, datamodule=FakeDataModule())  # fmt: skip
    return save_pretrained(stage.ae, tmp_path_factory.mktemp("resume") / "policy_mlp")


def _stage(policy, seed):
    L.seed_everything(seed, workers=True)
    optim = OptimConfig(warmup_steps=1, ema_decay=0.9)  # the EMA shadow weights must resume exactly too
    return RefinerStage(policy=str(policy), head_kwargs=TINY_HEAD, optim=optim)


def _weights(stage):
    ema = {f"ema.{k}": v for k, v in stage.ema.state_dict().items()}
    return {k: v.detach().clone() for k, v in {**stage.ae.state_dict(), **ema}.items()}


def _rows(root):
    (version,) = sorted((root / "refiner").iterdir())  # one version folder: the resumed run continued it
    with open(version / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_killed_refiner_fit_resumes_bit_for_bit_and_continues_its_log(policy, tmp_path):
    full = _stage(policy, 0)
    _trainer(tmp_path / "full").fit(full, datamodule=FakeDataModule(seed=0))

    killed = _stage(policy, 0)
    with pytest.raises(_Killed):
        _trainer(tmp_path / "run", _KillAt(KILL_AT)).fit(killed, datamodule=FakeDataModule(seed=0))
    assert killed.trainer.global_step == KILL_AT  # killed between two checkpoints (4 and 8)

    resumed = _stage(policy, 123)  # a new process: another global RNG state, another drawn train_seed
    assert resumed.train_seed != full.train_seed
    trainer = _trainer(tmp_path / "run")
    last = tmp_path / "run" / "ckpt" / "last.ckpt"
    resume_fit_folders(trainer, last)
    trainer.fit(resumed, datamodule=FakeDataModule(seed=0), ckpt_path=str(last), weights_only=True)
    assert resumed.trainer.global_step == STEPS

    wf, wr, wk = _weights(full), _weights(resumed), _weights(killed)
    trained = [k for k in wf if k.startswith("head.denoiser.")]
    assert trained and all(torch.equal(wf[k], wr[k]) for k in wf if not k.startswith("ema."))
    assert wf["ema.num_updates"] == STEPS
    assert [k for k in wf if k.startswith("ema.") and not torch.equal(wf[k], wr[k])] == []
    assert any(not torch.equal(wf[k], wk[k]) for k in trained)  # the comparison can fail

    full_rows, run_rows = _rows(tmp_path / "full"), _rows(tmp_path / "run")
    assert [r["step"] for r in run_rows] == [r["step"] for r in full_rows]  # nothing lost, nothing twice
    assert run_rows == full_rows


@pytest.mark.filterwarnings("ignore:.*reference is not registered on the model")  # a step without a Trainer
def test_global_rng_draws_in_a_training_step_depend_on_the_step_only(policy):
    """Dropout in a plug-in head (or any global-RNG draw inside a step) repeats on resume: a fresh
    process has another global RNG state, but the step's draws come from (train_seed, step)."""
    stage = _stage(policy, 0)
    drawn = []

    def losses(batch):
        drawn.append(torch.nn.functional.dropout(torch.ones(64), p=0.5, training=True))
        return {"loss": torch.zeros((), requires_grad=True)}

    stage.losses = losses
    batch = next(iter(FakeDataModule().train_dataloader()))
    for seed in (1, 2):  # two processes, two global RNG states
        torch.manual_seed(seed)
        before = torch.get_rng_state()
        stage.training_step(batch, 0)
        assert torch.equal(torch.get_rng_state(), before)  # the outer global RNG is left as it was
    assert torch.equal(drawn[0], drawn[1]) and not torch.equal(drawn[0], torch.ones(64) * 2)
    other = _stage(policy, 5)  # another train_seed: other draws
    other.losses = losses
    other.training_step(batch, 0)
    assert not torch.equal(drawn[2], drawn[0])
