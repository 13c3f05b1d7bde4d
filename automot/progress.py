"""Progress for long jobs, in a terminal and in a log file.

In a terminal (a TTY) a live bar; in a log file (no TTY) one plain line at most every `every_s`
seconds, so a job that runs for an hour writes a readable log instead of carriage returns or nothing.

    bar = Progress(total=48, desc="closed loop", unit="episode", every_s=30)
    for ...: bar.advance(1, note="highway DS 72.0")
    bar.close()
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def is_tty(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Throttle:
    """True at most once every `every_s` seconds (the first call is True)."""

    def __init__(self, every_s: float, clock=time.monotonic) -> None:
        if not every_s >= 0:
            raise ValueError(f"every_s: expected seconds >= 0, got {every_s}")
        self.every_s, self.clock, self.last = every_s, clock, None

    def __call__(self, force: bool = False) -> bool:
        now = self.clock()
        if force or self.last is None or now - self.last >= self.every_s:
            self.last = now
            return True
        return False


class Progress:
    """Counts done out of `total`: a tqdm bar in a TTY, otherwise a line at most every `every_s` s."""

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        unit: str = "it",
        every_s: float = 30.0,
        initial: int = 0,
        stream: TextIO | None = None,
        tty: bool | None = None,
        clock=time.monotonic,
    ) -> None:
        self.total, self.desc, self.unit, self.done = total, desc, unit, initial
        self.stream = stream or sys.stderr
        self.tty = is_tty(self.stream) if tty is None else tty
        self.clock, self.start, self.start_done = clock, clock(), initial
        self.throttle = Throttle(every_s, clock)
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream)
        else:
            self._line(force=True)

    def advance(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if note:
                self.bar.set_postfix_str(note)
        else:
            self._line(note=note, force=self.done >= self.total)

    def eta_s(self) -> float | None:
        rate_done = self.done - self.start_done
        if rate_done <= 0:
            return None
        return (self.clock() - self.start) / rate_done * (self.total - self.done)

    def _line(self, note: str = "", force: bool = False) -> None:
        if not self.throttle(force):
            return
        pct = 100.0 * self.done / self.total if self.total else 100.0
        parts = [f"{self.desc}: {self.done}/{self.total} {self.unit}s ({pct:.0f}%)"]
        parts.append(f"elapsed {format_duration(self.clock() - self.start)}")
        if self.done < self.total:
            parts.append(f"ETA {format_duration(self.eta_s())}")
        if note:
            parts.append(note)
        print(", ".join(parts), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
