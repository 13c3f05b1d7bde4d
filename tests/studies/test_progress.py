"""Progress of long jobs: throttled lines without a terminal, worker status files, the study view's ETA."""

import io
import json
import time

import pytest

from automot.progress import Progress, Throttle, format_duration
from studies.progress import StatusWriter, StudyView, read_status, status_path, task_durations
from studies.tasks import Task


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_throttle_and_progress_lines_at_most_every_n_seconds():
    clock = Clock()
    th = Throttle(10, clock)
    assert th() and not th()
    clock.t = 9.9
    assert not th() and th(force=True)
    stream = io.StringIO()
    bar = Progress(4, desc="closed loop", unit="episode", every_s=30, stream=stream, tty=False, clock=clock)
    for dt in (5, 5, 25):  # 5 s, 10 s, 35 s after the start line
        clock.t += dt
        bar.advance(1, note="highway")
    clock.t += 1
    bar.advance(1)  # the last one is always printed
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("closed loop: 0/4 episodes (0%)")
    assert lines[1].startswith("closed loop: 3/4 episodes (75%), elapsed 35 s, ETA 12 s, highway")
    assert lines[2].startswith("closed loop: 4/4 episodes (100%)") and len(lines) == 3
    assert format_duration(90) == "1.5 min" and format_duration(None) == "?"
    with pytest.raises(ValueError, match="every_s: expected seconds >= 0, got -1"):
        Throttle(-1)


def test_status_files_are_atomic_json_and_record_durations(tmp_path):
    status = StatusWriter(tmp_path, "eval:mlp:0:1", "eval", every_s=0)
    status.update("closed loop", 3, 12, "episode")
    s = read_status(tmp_path, "eval:mlp:0:1")
    assert (s["state"], s["phase"], s["done"], s["total"]) == ("running", "closed loop", 3, 12)
    assert not list(status_path(tmp_path, "x").parent.glob(".*.tmp"))  # no temporary file left behind
    status.finish()
    assert read_status(tmp_path, "eval:mlp:0:1")["state"] == "done"
    assert task_durations(tmp_path)["eval"][0] >= 0
    status_path(tmp_path, "broken").write_text("{not json")  # unreadable files are skipped, never fatal
    assert read_status(tmp_path, "broken") is None and len(task_durations(tmp_path)["eval"]) == 1


def test_study_view_lines_show_phases_finished_tasks_and_eta(tmp_path):
    tasks = [
        Task("ae:0", "ae"),
        Task("ae:1", "ae"),
        Task("eval:mlp:0:0", "eval"),
        Task("eval:mlp:1:0", "eval"),
    ]
    now = time.time()
    # ae:0 finished in 100 s (an earlier session); ae:1 is half way; both evals wait.
    for tid, state in (("ae:0", {"state": "done", "elapsed_s": 100.0}), ("ae:1", {"state": "running"})):
        path = status_path(tmp_path, tid)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "task": tid,
            "kind": "ae",
            "started": now - 50,
            "phase": "training",
            "done": 400,
            "total": 800,
            "unit": "step",
            **state,
        }
        path.write_text(json.dumps(body))
    lines = []
    view = StudyView(tmp_path, tasks, workers=2, live=False, say=lines.append, every_s=0)
    view.task_finished("ae:0")
    pending = ["eval:mlp:0:0", "eval:mlp:1:0"]
    assert view.eta_s(["ae:1"], pending, {"ae:1": read_status(tmp_path, "ae:1")}) is None  # eval time unknown
    view.durations["eval"] = [30.0]
    view.render(1, ["ae:1"], pending)
    line = lines[-1]
    assert "1/4 done, 1 running, 2 pending" in line and "ae:1 training 400/800 steps" in line
    assert "finished ae:0" in line
    # left: ae:1 half of 100 s + two evals of 30 s = 110 s of work on 2 workers
    assert "ETA 55 s" in line


def test_live_table_lists_running_tasks_with_their_phase(tmp_path):
    from rich.console import Console

    StatusWriter(tmp_path, "ae:0", "ae", every_s=0).update("training", 5, 10, "step")
    view = StudyView(
        tmp_path, [Task("ae:0", "ae"), Task("ue", "ue")], workers=2, live=False, say=print, every_s=0
    )
    console = Console(file=io.StringIO(), width=300)
    console.print(view._table(1, ["ae:0"], [], {"ae:0": read_status(tmp_path, "ae:0")}, 12.0))
    text = console.file.getvalue()
    assert "1/2 done, 1 running, 0 pending, ETA 12 s" in text and "training 5/10 steps" in text
