"""The Lightning CLI of the training stages (any LightningModule / LightningDataModule by class_path)."""

from __future__ import annotations

import sys

import lightning as L
from lightning.pytorch.cli import LightningCLI


class AutoMoTCLI(LightningCLI):
    """LightningCLI with the library's defaults: deterministic CPU-friendly trainer, seed 0, CSV +
    TensorBoard loggers unless the config names its own, the config saved next to the logs."""


def run_lightning_cli(argv: list[str]) -> AutoMoTCLI:
    # LightningCLI warns when it sees both `args` and a command line; ours is already parsed.
    saved, sys.argv = sys.argv, sys.argv[:1]
    try:
        return _cli(argv)
    finally:
        sys.argv = saved


def _cli(argv: list[str]) -> AutoMoTCLI:
    return AutoMoTCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=argv,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"deterministic": True},
    )
