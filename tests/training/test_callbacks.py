"""Closed-loop validation during training: its DS is what `automot eval --closed-loop` says about the
exported checkpoint on the same seeds, the exported weights are the selected ones, and a resumed run
selects what an uninterrupted one does."""

import contextlib
import io
import json

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from automot.cli import main as automot
from automot.io import load_safetensors
from driving.collect import collect
from driving.datamodule import DrivingDataModule
from mot.checkpoint import WEIGHTS
from tests.driving._onpolicy import small_collect
from training.callbacks import ClosedLoopValConfig, ClosedLoopValidation
from training.optim import OptimConfig
from training.policy import BackboneSpec
from training.stages import ActionExpertStage, RefinerStage

VAL = dict(every_n_steps=3, scenarios=["merge"], episodes=1, image_size=16, l2_batches=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cl_val")
    collect(small_collect(episodes=1), root / "train", progress=False)
    return root


class Killed(Exception):
    pass


class KillAt(L.Callback):
    """Dies at the start of a step, after the previous step's checkpoint was written (like kill -9)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise Killed


def fit(root, out, max_steps: int, ckpt_path=None, ckpt_dir=None, kill_at=None):
    L.seed_everything(0, workers=True, verbose=False)
    stage = ActionExpertStage(
        backbone=BackboneSpec(preset="tiny"), optim=OptimConfig(lr=3e-3, warmup_steps=1), export_dir=str(out)
    )
    callback = ClosedLoopValidation(**VAL)
    callbacks = [callback] + ([KillAt(kill_at)] if kill_at is not None else [])
    if ckpt_dir is not None:
        callbacks.append(
            ModelCheckpoint(dirpath=str(ckpt_dir), every_n_train_steps=3, save_last=True, save_top_k=0)
        )
    trainer = L.Trainer(
        accelerator="cpu", max_steps=max_steps, limit_val_batches=0, deterministic=True, logger=False,
        callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=ckpt_dir is not None,
    )  # fmt: skip
    dm = DrivingDataModule(
        root / "train", root / "train", batch_size=5, seed=0
    )  # 13 samples: no batch of one
    trainer.fit(stage, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    return callback


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cl_policy") / "policy"
    return fit(data, out, max_steps=7), out


def test_validation_ds_equals_automot_eval_on_the_exported_checkpoint(trained):
    callback, out = trained
    assert [h["step"] for h in callback.history] == [3, 6, 7]  # every 3 steps and after the last one
    for h in callback.history:
        assert h["completed"] + h["collision"] + h["offroad"] + h["timeout"] == 1
        assert h["l2_avg"] is not None and h["l2_avg"] > 0
    best = callback.best
    assert best["ds"] == max(h["ds"] for h in callback.history)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = automot(
            ["eval", "--ckpt", str(out), "--closed-loop", "--split", "val", "--episodes", "1",
             "--scenarios", "merge", "--image-size", "16", "--json"]
        )  # fmt: skip
    assert code == 0
    result = json.loads(stdout.getvalue())
    assert result["closed_loop"]["ds"] == pytest.approx(best["ds"], abs=1e-9)
    assert (
        result["closed_loop"]["outcomes"][
            max(("completed", "collision", "offroad", "timeout"), key=lambda k: best[k])
        ]
        == 1
    )


def test_the_exported_weights_are_the_selected_ones(trained):
    callback, out = trained
    exported = load_safetensors(out / WEIGHTS)
    assert exported.keys() == callback.best_state.keys()
    for k, v in exported.items():
        torch.testing.assert_close(v, callback.best_state[k], rtol=0, atol=0)


def test_a_resumed_run_selects_what_an_uninterrupted_one_does(data, trained, tmp_path):
    callback, _ = trained
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Killed):
        fit(data, tmp_path / "a", max_steps=7, ckpt_dir=ckpt, kill_at=4)  # dies after the step-3 checkpoint
    assert not (tmp_path / "a").exists()
    resumed = fit(data, tmp_path / "b", max_steps=7, ckpt_path=str(ckpt / "last.ckpt"), ckpt_dir=ckpt)
    assert resumed.history == callback.history
    assert resumed.best == callback.best


def _eval_val(policy, *extra) -> dict:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = automot(
            ["eval", "--ckpt", str(policy), "--closed-loop", "--split", "val", "--episodes", "1",
             "--scenarios", "merge", "--image-size", "16", "--json", *extra]
        )  # fmt: skip
    assert code == 0
    return json.loads(stdout.getvalue())


@pytest.fixture(scope="module")
def refined(data, trained, tmp_path_factory):
    """A diffusion refiner trained around the AE policy of `trained`, validated every 2 steps."""
    _, policy = trained
    out = tmp_path_factory.mktemp("cl_refiner") / "policy_diffusion"
    L.seed_everything(0, workers=True, verbose=False)
    stage = RefinerStage(
        policy=str(policy),
        head="diffusion",
        head_kwargs={"refiner": {"dim": 32, "depth": 1, "moa": {"num_heads": 4}}},
        optim=OptimConfig(lr=3e-3, warmup_steps=1),
        export_dir=str(out),
    )
    callback = ClosedLoopValidation(**{**VAL, "every_n_steps": 2})
    trainer = L.Trainer(
        accelerator="cpu", max_steps=5, limit_val_batches=0, deterministic=True, logger=False,
        callbacks=[callback], enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(stage, datamodule=DrivingDataModule(data / "train", data / "train", batch_size=5, seed=0))
    return callback, out, policy


def test_a_refiner_is_validated_with_its_own_head_and_exports_the_selected_weights(refined):
    callback, out, policy = refined
    assert [h["step"] for h in callback.history] == [2, 4, 5]
    exported = load_safetensors(out / WEIGHTS)
    assert exported.keys() == callback.best_state.keys()
    for k, v in exported.items():
        torch.testing.assert_close(v, callback.best_state[k], rtol=0, atol=0)
    # The refiner trains its denoiser only: every weight of the MLP policy is exported unchanged (its
    # MLP head as the diffusion head's prior).
    mlp = load_safetensors(policy / WEIGHTS)
    renamed = {
        k.replace("head.", "head.prior.", 1) if k.startswith("head.") else k: v for k, v in mlp.items()
    }
    assert renamed.keys() <= exported.keys()
    for k, v in renamed.items():
        torch.testing.assert_close(exported[k], v, rtol=0, atol=0)
    denoiser = [k for k in exported if k.startswith("head.denoiser.")]
    assert denoiser and set(exported) - set(renamed) == set(denoiser)
    assert callback.best["ds"] == max(h["ds"] for h in callback.history)
    # What the validation said about the selected weights is what `automot eval` says about the export
    # (the diffusion head driven with sampling seed 0, as the callback drives it).
    result = _eval_val(out, "--sampling-seed", "0")
    assert result["head"] == "diffusion"
    assert result["closed_loop"]["ds"] == pytest.approx(callback.best["ds"], abs=1e-9)


def test_bad_validation_configs_name_the_field():
    with pytest.raises(ValueError, match=r"ClosedLoopValConfig\.every_n_steps"):
        ClosedLoopValConfig(every_n_steps=0)
    with pytest.raises(ValueError, match=r"ClosedLoopValConfig\.scenarios"):
        ClosedLoopValConfig(scenarios=["moon"])
