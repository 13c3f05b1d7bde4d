"""Live progress of a study: workers write small status files, the orchestrator polls and shows them.

A worker process has no channel back to the orchestrator but its result, so each task writes
`work/status/{task}.json` ({state, phase, done, total, unit, started, updated, finished, elapsed_s})
atomically (temporary file + rename) at most every `every_s` seconds and once at the end. A reader
sees the old or the new file, never half of one; a task killed with -9 leaves a stale "running"
file, which its rerun overwrites and which nobody reads meanwhile (the orchestrator only shows the
tasks it is running). Finished tasks keep their file: `automot study plan` reads their durations.

The orchestrator's view (`StudyView`): tasks done / running / pending, each running task's phase
(training step, episodes driven), and an ETA from the durations of finished tasks of the same kind
(or the running task's own rate). In a terminal a `rich` live table; in a log file one line at most
every `every_s` seconds, listing the tasks finished since the previous line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from automot.progress import Throttle, format_duration

STATUS_DIR = ("work", "status")


def status_path(study: Path, task_id: str) -> Path:
    return Path(study).joinpath(*STATUS_DIR, task_id.replace(":", "_") + ".json")


def read_status(study: Path, task_id: str) -> dict | None:
    try:
        return json.loads(status_path(study, task_id).read_text())
    except (OSError, ValueError):
        return None


class StatusWriter:
    """What a task reports about itself (written by the worker process running it)."""

    def __init__(self, study: Path, task_id: str, kind: str, every_s: float = 1.0) -> None:
        self.path = status_path(study, task_id)
        self.throttle = Throttle(every_s)
        self.started = time.time()
        self.state = {"task": task_id, "kind": kind, "state": "running", "started": self.started}
        self.update("starting", force=True)

    def update(
        self,
        phase: str,
        done: int | None = None,
        total: int | None = None,
        unit: str = "",
        force: bool = False,
    ) -> None:
        self.state.update({"phase": phase, "done": done, "total": total, "unit": unit})
        if self.throttle(force):
            self._write()

    def finish(self) -> None:
        now = time.time()
        self.state.update(
            {"state": "done", "phase": "done", "finished": now, "elapsed_s": now - self.started}
        )
        self._write()

    def _write(self) -> None:
        from automot.io import write_json_atomic

        self.state["updated"] = time.time()
        write_json_atomic(self.path, self.state)


def training_callback(status: StatusWriter):
    """A Lightning callback reporting the training step to `status`."""
    import lightning as L

    class _Status(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            status.update("training", trainer.global_step, trainer.max_steps, "step")

    return _Status()


def task_durations(study: Path) -> dict[str, list[float]]:
    """Elapsed seconds of every finished task with a status file, by kind."""
    out: dict[str, list[float]] = {}
    folder = Path(study).joinpath(*STATUS_DIR)
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            s = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if s.get("state") == "done" and s.get("elapsed_s") is not None:
            out.setdefault(s["kind"], []).append(float(s["elapsed_s"]))
    return out


def _phase(s: dict | None) -> str:
    if not s:
        return "starting"
    if s.get("total"):
        return f"{s['phase']} {s['done']}/{s['total']} {s.get('unit', '')}s".rstrip()
    return str(s.get("phase", ""))


class StudyView:
    """The orchestrator's picture of a study; `render` is called every poll."""

    def __init__(
        self, study: Path, tasks, workers: int, *, live: bool, say: Callable[[str], None], every_s: float
    ) -> None:
        self.study, self.workers, self.say = Path(study), workers, say
        self.kinds = {t.id: t.kind for t in tasks}
        self.total = len(tasks)
        self.durations = task_durations(study)
        self.throttle = Throttle(every_s)
        self.finished_since: list[str] = []
        self.started: dict[str, float] = {}
        self.live = None
        if live:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(console=Console(), refresh_per_second=2, transient=False)
            self.live.start()

    def task_started(self, task_id: str) -> None:
        self.started[task_id] = time.time()

    def task_finished(self, task_id: str) -> None:
        s = read_status(self.study, task_id)
        if s and s.get("state") == "done" and s.get("elapsed_s") is not None:
            self.durations.setdefault(self.kinds[task_id], []).append(float(s["elapsed_s"]))
        self.finished_since.append(task_id)

    def _estimate(self, kind: str, statuses: dict[str, dict | None]) -> float | None:
        if self.durations.get(kind):
            return sum(self.durations[kind]) / len(self.durations[kind])
        for tid, s in statuses.items():  # a running task of this kind, extrapolated from its own rate
            if self.kinds[tid] == kind and s and s.get("total") and s.get("done"):
                return (time.time() - s["started"]) * s["total"] / s["done"]
        return None

    def eta_s(self, running: list[str], pending: list[str], statuses: dict) -> float | None:
        left = 0.0
        for tid in running:
            est, s = self._estimate(self.kinds[tid], statuses), statuses.get(tid)
            if est is None:
                return None
            frac = (s["done"] / s["total"]) if s and s.get("total") else 0.0
            left += max(0.0, est * (1 - frac))
        for tid in pending:
            est = self._estimate(self.kinds[tid], statuses)
            if est is None:
                return None
            left += est
        return left / max(1, min(self.workers, len(running) + len(pending)))

    def render(self, done: int, running: list[str], pending: list[str], force: bool = False) -> None:
        statuses = {tid: read_status(self.study, tid) for tid in running}
        eta = self.eta_s(running, pending, statuses)
        if self.live is not None:
            self.live.update(self._table(done, running, pending, statuses, eta))
            return
        if not self.throttle(force):
            return
        parts = [
            f"[{time.strftime('%H:%M:%S')}] {done}/{self.total} done, {len(running)} running, {len(pending)} pending"
        ]
        if running:
            parts.append("; ".join(f"{tid} {_phase(statuses[tid])}" for tid in running))
        if self.finished_since:
            parts.append("finished " + ", ".join(self.finished_since))
            self.finished_since = []
        parts.append(f"ETA {format_duration(eta)}")
        self.say(" | ".join(parts))

    def _table(self, done, running, pending, statuses, eta):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        header = Text(
            f"study {self.study}: {done}/{self.total} done, {len(running)} running, "
            f"{len(pending)} pending, ETA {format_duration(eta)}"
        )
        table = Table()
        for col in ("task", "phase", "elapsed"):
            table.add_column(col)
        now = time.time()
        for tid in running:
            s = statuses.get(tid)
            started = s["started"] if s else self.started.get(tid, now)
            table.add_row(tid, _phase(s), format_duration(now - started))
        return Group(header, table)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
