"""A progress line every N training steps, for `automot fit` writing to a log file.

Lightning's bar redraws one line with carriage returns: in a log file that is one endless line or
nothing until the end. Without a terminal, `automot fit` turns the bar off and adds `LogProgress`:

    step 400/2000 (20%), epoch 3 | train/loss 0.412, val/l2_avg 0.61 | 2.9 steps/s | elapsed 2.3 min, ETA 9.2 min
"""

from __future__ import annotations

import sys
import time

import lightning as L

from automot.progress import format_duration


class LogProgress(L.Callback):
    """Print a progress line every `every_n_steps` optimiser steps (rank 0 only), and at the end."""

    def __init__(self, every_n_steps: int = 50, stream=None) -> None:
        if not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps: expected an int >= 1, got {every_n_steps!r}")
        self.every_n_steps, self.stream = every_n_steps, stream
        self._start = self._start_step = None
        self._last_step = -1

    def on_train_start(self, trainer, pl_module) -> None:
        self._start, self._start_step = time.monotonic(), trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step != self._last_step and step % self.every_n_steps == 0 and step > 0:
            self._last_step = step
            self._print(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_step != self._last_step:
            self._print(trainer)

    def _print(self, trainer) -> None:
        if not trainer.is_global_zero:
            return
        step, total = trainer.global_step, trainer.max_steps
        elapsed = time.monotonic() - (self._start or time.monotonic())
        done = step - (self._start_step or 0)
        rate = done / elapsed if elapsed > 0 else 0.0
        head = f"step {step}" + (f"/{total} ({100 * step / total:.0f}%)" if total and total > 0 else "")
        parts = [f"{head}, epoch {trainer.current_epoch}"]
        metrics = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if k.startswith(("train/", "val/")) and getattr(v, "numel", lambda: 1)() == 1
        }
        shown = sorted(metrics)[:4]
        if shown:
            parts.append(", ".join(f"{k} {metrics[k]:.4g}" for k in shown))
        parts.append(f"{rate:.2f} steps/s")
        timing = f"elapsed {format_duration(elapsed)}"
        if total and total > 0 and rate > 0 and step < total:
            timing += f", ETA {format_duration((total - step) / rate)}"
        parts.append(timing)
        print(" | ".join(parts), file=self.stream or sys.stdout, flush=True)
