"""Quiet by default: the output of a command is its own progress and results, not the libraries' chatter.

Hidden unless `--verbose` (or `AUTOMOT_VERBOSE=1`, which study workers inherit):
- Lightning's INFO banners and tips ("GPU available ...", "💡 Tip: ...", the model summary's
  "modules in eval mode" note, "LOCAL_RANK ...");
- expected warnings: a frozen, eval-mode action expert in the refiner stage, Lightning's
  "does not have many workers" / "LeafSpec" notes, deprecation and future warnings of dependencies
  (transformers' `past_key_values` tuple notice and friends).

Errors are never hidden, and neither are warnings this library raises about the user's data.
"""

from __future__ import annotations

import logging
import os
import warnings

VERBOSE_ENV = "AUTOMOT_VERBOSE"

_NOISY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning", "transformers")
_EXPECTED_WARNINGS = (
    r".*module\(s\) in eval mode.*",
    r".*LeafSpec.*",
    r".*does not have many workers.*",
    r".*past_key_values.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    r".*torch.meshgrid.*",
)


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def configure_output(verbose: bool | None = None) -> None:
    """Apply the quiet (default) or verbose setting to warnings and library loggers, in this process
    and (through the environment) in the processes it starts."""
    if verbose is None:
        verbose = is_verbose()
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    if verbose:
        return
    for pattern in _EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    _quiet_loggers()


def _quiet_loggers() -> None:
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        for child in list(logging.root.manager.loggerDict):
            if child.startswith(name + "."):
                logging.getLogger(child).setLevel(logging.WARNING)


def quiet_lightning() -> None:
    """Call after `import lightning` (it resets its loggers to INFO when first imported)."""
    if is_verbose():
        return
    import lightning.pytorch  # noqa: F401

    configure_output(False)
