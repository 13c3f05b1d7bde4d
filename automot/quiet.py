"""Quiet by default: the output of a command is its own progress and results, not the libraries' chatter.

Hidden unless `--verbose` (or `AUTOMOT_VERBOSE=1`, which study workers inherit):
- Lightning's INFO banners and tips ("GPU available ...", "💡 Tip: ...", the model summary's
  "modules in eval mode" note, "LOCAL_RANK ...");
- expected warnings: a frozen, eval-mode action expert in the refiner stage, Lightning's
  "does not have many workers" / "LeafSpec" notes, deprecation and future warnings of dependencies
  (transformers' `past_key_values` notice, where a dependency still triggers it, and friends).

Errors are never hidden, and neither are warnings this library raises about the user's data.
"""

from __future__ import annotations

import logging
import os
import warnings

VERBOSE_ENV = "AUTOMOT_VERBOSE"

# Logger -> the lowest level still shown in quiet mode (transformers reports deprecations as warnings).
_NOISY_LOGGERS = {
    "lightning.pytorch": logging.WARNING,
    "lightning.fabric": logging.WARNING,
    "lightning": logging.WARNING,
    "pytorch_lightning": logging.WARNING,
    "transformers": logging.ERROR,
}
_EXPECTED_WARNINGS = (
    r".*module\(s\) in eval mode.*",
    r".*LeafSpec.*",
    r".*does not have many workers.*",
    r".*past_key_values.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*Experiment logs directory .* exists and is not empty.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    r".*torch.meshgrid.*",
)


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


_saved: dict | None = None  # what quiet mode changed, so a later verbose call in this process restores it


def configure_output(verbose: bool | None = None) -> None:
    """Apply the quiet (default) or verbose setting to warnings and library loggers, in this process
    and (through the environment) in the processes it starts."""
    global _saved
    if verbose is None:
        verbose = is_verbose()
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    if verbose:
        if _saved is not None:
            warnings.filters[:] = _saved["filters"]
            for name, level in _saved["levels"].items():
                logging.getLogger(name).setLevel(level)
            _saved = None
        return
    if _saved is None:
        _saved = {"filters": list(warnings.filters), "levels": {}}
    for pattern in _EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    _quiet_loggers(_saved["levels"])


def _quiet_loggers(levels: dict) -> None:
    names = [
        n
        for n in list(logging.root.manager.loggerDict)
        if any(n == p or n.startswith(p + ".") for p in _NOISY_LOGGERS)
    ]
    for name in {*_NOISY_LOGGERS, *names}:
        logger = logging.getLogger(name)
        levels.setdefault(name, logger.level)
        root = next(p for p in _NOISY_LOGGERS if name == p or name.startswith(p + "."))
        logger.setLevel(_NOISY_LOGGERS[root])


def quiet_lightning() -> None:
    """Call after `import lightning` (it resets its loggers to INFO when first imported)."""
    if is_verbose():
        return
    import lightning.pytorch  # noqa: F401

    configure_output(False)
