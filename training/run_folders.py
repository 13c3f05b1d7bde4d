"""Where a fit writes, and how a resumed fit picks its folders up again.

- `check_run_folders(trainer, export_dir)`: the export folder must not be, contain or lie inside a
  logger's folder or a checkpoint folder (an export replacing its own logs was a data-loss bug).
- `LogVersions`: a callback that, whenever a checkpoint is saved, flushes the loggers (so no row
  logged before the checkpoint is lost to a kill) and records their versions in the checkpoint.
- `resume_fit_folders(trainer, ckpt_path)`: before a resumed `fit`, checks the checkpoint loads with
  `weights_only=True`, points every logger at the version folder the checkpoint was written from,
  and keeps exactly the CSV rows logged before the checkpoint (later rows are logged again by the
  resumed run, so the file ends with the rows of an uninterrupted run); TensorBoard purges its events
  from that step on.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch

CHECKPOINT_KEY = "automot_logs"


def _logger_folders(trainer) -> list[Path]:
    folders = []
    for logger in trainer.loggers:
        root = getattr(logger, "root_dir", None) or getattr(logger, "save_dir", None)
        if root:
            folders.append(Path(root))
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "dirpath", None):
            folders.append(Path(callback.dirpath))
    return folders


def check_run_folders(trainer, export_dir: str | os.PathLike | None, *, field: str = "export_dir") -> None:
    """`ValueError` when the export folder overlaps a log or checkpoint folder of this fit."""
    if export_dir is None:
        return
    export = Path(export_dir).resolve()
    for folder in _logger_folders(trainer):
        folder = folder.resolve()
        if export == folder or export.is_relative_to(folder) or folder.is_relative_to(export):
            raise ValueError(
                f"{field}: expected a folder apart from this fit's logs and checkpoints, got {export_dir}, "
                f"which overlaps {folder}; export elsewhere (e.g. next to the logs, not inside them)"
            )


class LogVersions(L.Callback):
    """Flush the loggers and record their versions in every checkpoint (see the module docstring)."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        for logger in trainer.loggers:
            logger.save()
        checkpoint[CHECKPOINT_KEY] = {
            "versions": [_version(logger) for logger in trainer.loggers],
            "step": int(trainer.global_step),
        }


def _version(logger) -> Any:
    version = getattr(logger, "version", None)
    return version if isinstance(version, (int, str)) else None


def peek_checkpoint(path: str | os.PathLike, *, field: str = "--ckpt_path") -> dict[str, Any]:
    """Load a Lightning checkpoint the safe way (`weights_only=True`, memory-mapped) or say why not."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{field}: expected an existing Lightning checkpoint file, got {path} (not found)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        if isinstance(err, torch.serialization.pickle.UnpicklingError) or "weights_only" in str(err):
            raise ValueError(
                f"{field}: expected a checkpoint that loads with weights_only=True, got {path}, which needs "
                "arbitrary code to unpickle; it was not loaded (only load checkpoints you trust, and not through "
                "this library)"
            ) from None
        raise ValueError(
            f"{field}: expected a complete Lightning checkpoint, got an unreadable file {path} "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{field}: expected a Lightning checkpoint (a dict with a state_dict), got {path}")
    return checkpoint


def resume_fit_folders(trainer, ckpt_path: str | os.PathLike | None, *, field: str = "--ckpt_path") -> None:
    """Prepare the loggers of `trainer` to continue the run saved in `ckpt_path` (see the docstring)."""
    if ckpt_path is None:
        return
    checkpoint = peek_checkpoint(ckpt_path, field=field)
    info = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(info, dict):
        return  # written before versions were recorded: Lightning's default (a new version)
    step = int(info.get("step", 0))
    for logger, version in zip(trainer.loggers, info.get("versions", [])):
        if version is None or not hasattr(logger, "_version"):
            continue
        logger._version = version
        if type(logger).__name__ == "TensorBoardLogger":
            logger._kwargs["purge_step"] = step
        elif type(logger).__name__ == "CSVLogger":
            _continue_csv(logger, step)


def _continue_csv(logger, step: int) -> None:
    """Keep the rows logged before `step` (moved aside while Lightning's writer starts, which would
    delete metrics.csv), drop the later ones (the resumed run logs them again)."""
    from lightning.fabric.loggers.csv_logs import _ExperimentWriter

    path = Path(logger.log_dir) / _ExperimentWriter.NAME_METRICS_FILE
    if not path.is_file():
        return
    aside = path.with_name(f".{path.name}.resume")
    os.replace(path, aside)
    with open(aside, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("step") not in (None, "") and int(r["step"]) < step]
    writer = logger.experiment
    writer.metrics = [{k: v for k, v in r.items() if v != ""} for r in rows]
    writer.save()
    aside.unlink()
