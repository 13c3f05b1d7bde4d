"""The Lightning CLI of the training stages (any LightningModule / LightningDataModule by class_path).

On top of LightningCLI: a `--ckpt_path` is checked before anything is built (it must exist and load
with `weights_only=True`), a resumed fit continues in the log version folders it was saved from,
every checkpoint flushes the loggers first (`training.run_folders`), the progress bar counts steps
(`training.step_progress`), and a configuration error is one line naming the first clear cause
instead of jsonargparse's dump of every Union alternative it tried.
"""

from __future__ import annotations

import re
import sys

import lightning as L
from lightning.pytorch.cli import LightningCLI

from automot.quiet import is_verbose, quiet_lightning
from training.run_folders import LogVersions, peek_checkpoint, resume_fit_folders
from training.step_progress import StepProgressBar


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

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        ckpt = self.config[sub].get("ckpt_path") if sub else None
        if ckpt:
            peek_checkpoint(ckpt)  # a missing, damaged or pickle-needing file stops here, clearly

    def instantiate_trainer(self, **kwargs):
        every = self._get(self.config, "progress_every", default=50)
        if not isinstance(every, int) or every < 0:
            raise ValueError(f"--progress_every: expected an int >= 0, got {every!r}")
        if every > 0 and not sys.stdout.isatty():
            from training.progress import LogProgress

            self.trainer_defaults = {**self.trainer_defaults, "callbacks": [LogProgress(every)]}
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks.append(LogVersions())
        if trainer.progress_bar_callback is not None and not isinstance(
            trainer.progress_bar_callback, StepProgressBar
        ):
            # Lightning's bar reads "Epoch 7/-2" when training is bounded by steps; ours counts steps.
            index = trainer.callbacks.index(trainer.progress_bar_callback)
            trainer.callbacks[index] = StepProgressBar()
        return trainer

    def fit(self, model, **kwargs) -> None:
        resume_fit_folders(self.trainer, kwargs.get("ckpt_path"))
        self.trainer.fit(model, **kwargs)


def run_lightning_cli(argv: list[str]) -> AutoMoTCLI:
    # LightningCLI warns when it sees both `args` and a command line; ours is already parsed.
    quiet_lightning()
    saved, sys.argv = sys.argv, sys.argv[:1]
    try:
        return _cli(argv)
    except SystemExit as err:
        if err.code not in (None, 0):
            raise ValueError(_last_message()) from None
        raise
    except ValueError as err:  # raised while building the classes; jsonargparse wraps our own errors
        raise ValueError(clear_cause(err)) from None
    finally:
        sys.argv = saved


_captured: list[str] = []


def _cli(argv: list[str]) -> AutoMoTCLI:
    from jsonargparse import ArgumentParser

    _captured.clear()
    original = ArgumentParser.error

    def error(self, message, ex=None):  # jsonargparse reports every problem through here
        if not getattr(self, "exit_on_error", True):
            return original(self, message, ex)  # an inner parser trying alternatives: not final
        _captured.append(str(message))
        if ex is not None:
            own = clear_cause(ex)
            if _OWN.search(own):
                _captured.append(own)
        raise SystemExit(2)  # the message is printed by `automot` as one line, without the usage dump

    ArgumentParser.error = error
    try:
        return AutoMoTCLI(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=argv,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={
                "deterministic": True,
                "enable_progress_bar": sys.stdout.isatty(),
                "enable_model_summary": is_verbose(),
            },
        )
    finally:
        ArgumentParser.error = original


# Our own messages name a field and say "expected ..., got ..."; jsonargparse wraps them (and its
# own type errors) in nested Union / class_path reports.
_OWN = re.compile(r"([A-Za-z_][\w.\[\]-]*: expected .+)")
_KEY = re.compile(r'Parser key "([^"]+)"')


def first_clear_cause(message: str) -> str:
    """The one line worth reading in a jsonargparse error report."""
    lines = [line.strip(" -|") for line in message.splitlines() if line.strip(" -|")]
    for line in lines:
        match = _OWN.search(line)
        if match:
            return match.group(1).rstrip()
    noise = ("Does not validate against any of the Union", "Problem with given class_path", "Subtypes:",
             "Errors:", "Given value", "Expected a <class 'NoneType'>", "Parser key")  # fmt: skip
    useful = [line for line in lines if not any(n in line for n in noise)]
    key = _KEY.search(message)
    first = useful[0] if useful else (lines[0] if lines else message)
    for pattern, replacement in _REWRITES:
        first = pattern.sub(replacement, first)
    return f"{key.group(1)}: {first}" if key and key.group(1) not in first else first


# jsonargparse's own phrasings, said the way the rest of the library says things.
_REWRITES = (
    (re.compile(r"Expected a <class '(\w+)'>\. Got value: (.*)"), r"expected a \1, got \2"),
    (
        re.compile(r'.*No action for key "(.+?)" to check its value\.?'),
        r"expected a known argument, got the unknown key '\1'",
    ),
    (re.compile(r"Option '(.+?)' is not accepted"), r"expected a known argument, got the unknown key '\1'"),
    (
        re.compile(r"Expected a path but (.+?) either not accessible or invalid"),
        r"expected an importable class path, got \1",
    ),
)


def clear_cause(err: BaseException) -> str:
    """The deepest one-line "field: expected ..., got ..." message in an exception chain, else the
    first clear line of the outermost message."""
    seen, chain = set(), []
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        chain.append(err)
        err = err.__cause__ or err.__context__
    for e in reversed(chain):  # the deepest is the one our own code raised
        text = str(e).strip()
        if isinstance(e, ValueError) and text and "\n" not in text and "expected" in text.lower():
            return text
    return first_clear_cause(str(chain[0]))


def _last_message() -> str:
    if not _captured:
        return "fit: expected a valid configuration (see `automot fit --help`)"
    return first_clear_cause(_captured[-1])
