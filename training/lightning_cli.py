"""The Lightning CLI of the training stages (any LightningModule / LightningDataModule by class_path)."""

from __future__ import annotations

import sys

import lightning as L
from lightning.pytorch.cli import LightningCLI


class AutoMoTCLI(LightningCLI):
    """LightningCLI with the library's defaults: deterministic CPU-friendly trainer, seed 0, CSV +
    TensorBoard loggers unless the config names its own, the config saved next to the logs.

    Without a terminal (output to a log file), Lightning's redrawn bar is off by default and a plain
    progress line is printed every `--progress_every` steps (`training.progress.LogProgress`)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--progress_every",
            type=int,
            default=50,
            help="without a terminal: print a progress line every this many steps (0: never)",
        )

    def instantiate_trainer(self, **kwargs):
        every = self._get(self.config, "progress_every", default=50)
        if not isinstance(every, int) or every < 0:
            raise ValueError(f"--progress_every: expected an int >= 0, got {every!r}")
        if every > 0 and not sys.stdout.isatty():
            from training.progress import LogProgress

            self.trainer_defaults = {**self.trainer_defaults, "callbacks": [LogProgress(every)]}
        return super().instantiate_trainer(**kwargs)


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
        trainer_defaults={"deterministic": True, "enable_progress_bar": sys.stdout.isatty()},
    )
