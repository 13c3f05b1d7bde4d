"""Run a study: schedule its tasks over worker processes as their dependencies finish (the longest
remaining chain first, `studies.schedule`), collect one line per finished run in `runs.jsonl`, then
write `summary.json`, `report.md` and the plots.

Executors (all run the same `studies.tasks.run_task`):
- "local":           a pool of spawned worker processes on this machine (`workers` of them);
- "submitit-local":  submitit's local executor (one subprocess per task), the same code path a
                     SLURM cluster uses;
- "submitit-slurm":  submitit on SLURM: one job per task, submitted as its dependencies finish.

Resuming: finished tasks are skipped (their outputs exist); a run file written by a worker that the
orchestrator did not get to record is recorded at start-up. `runs.jsonl` is written by this process
only (one writer), in completion order; the summary sorts runs, so it does not depend on that order.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from automot.config import build_config
from automot.io import append_jsonl, make_dirs, read_jsonl, write_json_atomic
from studies.config import StudyConfig, load_study_config
from studies.schedule import bottom_levels, by_priority, task_cost
from studies.tasks import Task, is_done, plan_tasks, run_path, run_task
from studies.validate import config_differences, kept_tasks_when_forced, validate_study

EXECUTORS = ("local", "submitit-local", "submitit-slurm")
# Fault injection for the resume tests: SIGKILL this process after N tasks have finished.
KILL_AFTER_ENV = "AUTOMOT_STUDY_KILL_AFTER_TASKS"


@dataclass
class StudyResult:
    study_dir: Path
    summary_path: Path
    report_path: Path
    summary: dict


def _threads_for(task: Task) -> int:
    # A task's thread count is fixed by the task (not by scheduling or --workers), so its numbers
    # never depend on how it was scheduled. UE pretraining runs while nothing else can: two threads.
    return 2 if task.kind == "ue" else 1


def _die_with_parent() -> None:
    """Worker initializer: on Linux, ask the kernel to kill this worker when the orchestrator dies, so
    an interrupted study leaves no orphaned workers behind (their outputs are atomic, nothing is lost)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class _LocalPool:
    def __init__(self, workers: int) -> None:
        self.pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_die_with_parent
        )

    def submit(self, fn: Callable, *args) -> Future:
        return self.pool.submit(fn, *args)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Submitit:
    """submitit jobs wrapped in futures (a thread waits on each job's result)."""

    def __init__(self, folder: Path, cluster: str, workers: int, slurm: dict | None) -> None:
        import submitit

        self.executor = submitit.AutoExecutor(
            folder=str(folder), cluster=None if cluster == "slurm" else cluster
        )
        params = {"timeout_min": 24 * 60, "cpus_per_task": 1}
        if cluster == "slurm":
            params.update({f"slurm_{k}": v for k, v in (slurm or {}).items()})
        self.executor.update_parameters(**params)
        self.waiters = ThreadPoolExecutor(max_workers=max(1, workers))

    def submit(self, fn: Callable, *args) -> Future:
        job = self.executor.submit(fn, *args)
        return self.waiters.submit(job.result)

    def shutdown(self) -> None:
        self.waiters.shutdown(wait=True)


def _make_executor(kind: str, study: Path, workers: int, slurm: dict | None):
    if kind == "local":
        return _LocalPool(workers)
    if kind == "submitit-local":
        return _Submitit(study / "work" / "submitit", "local", workers, None)
    if kind == "submitit-slurm":
        return _Submitit(study / "work" / "submitit", "slurm", workers, slurm)
    raise ValueError(f"executor: expected one of {list(EXECUTORS)}, got {kind!r}")


# What a study folder holds; a folder seeded with some of these (e.g. another study's data) is fine.
STUDY_ENTRIES = frozenset(
    {"study.json", "data", "ue", "seeds", "runs", "runs.jsonl", "summary.json", "report.md", "work", "logs",
     "superseded", ".lock", "failures", "ds_by_head.png", "l2_by_horizon.png", "performance_profile.png",
     "trajectories.png"}
)  # fmt: skip


def check_study_folder(study: Path) -> None:
    """A study folder is new, empty, a study's or seeded with study outputs; a file or a folder
    holding anything else is refused."""
    if study.exists() and not study.is_dir():
        raise ValueError(f"out: expected a study folder, got the file {study}")
    foreign = sorted(p.name for p in study.iterdir() if p.name not in STUDY_ENTRIES) if study.is_dir() else []
    if foreign and not (study / "study.json").exists():
        names = foreign[:4]
        raise ValueError(
            f"out: expected a new or empty folder, or a study started with automot study, at {study}; got a folder "
            f"holding {names} and no study.json. Nothing was written: choose another folder"
        )


def prepare_study(study: Path, config: StudyConfig, *, force: bool = False) -> None:
    """Create the folder and store the config; a resumed study must have the same config, or the same
    with training or sampling seeds appended (`grown_by_seeds`: every finished task is kept, the new
    seeds' tasks run, the worst-episode strips are drawn again over all runs).

    With `force`, a study started with another config is continued with this one: its finished
    tasks whose inputs did not change (the data, and the UE if its settings are the same) are kept,
    every other output is moved (never deleted) to `superseded/<n>/`.
    """
    check_study_folder(study)
    make_dirs(study, field="out")
    path = study / "study.json"
    wanted = json.loads(json.dumps(config.to_dict()))
    if not path.exists():
        write_json_atomic(path, wanted)
        return
    try:
        stored = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path}: expected the JSON config of this study, got unreadable content ({err})"
        ) from err
    full = _with_defaults(stored)
    if stored == wanted or full == wanted:
        return  # the same study (a study.json from before a field existed has the field's default)
    if full is not None and grown_by_seeds(full, wanted):
        # Every finished task stays valid (a task depends on the config and its own seeds); only the
        # worst-episode strips look across all runs: they move aside and are drawn again.
        _supersede(study, keep_all=True)
        write_json_atomic(path, wanted)
        return
    diff = config_differences(full if full is not None else stored, wanted)
    if not force:
        raise ValueError(
            f"study {study}: expected the config it was started with to resume it; these fields differ: "
            f"{'; '.join(diff)}. Use another --out folder for another study, or --force to continue this folder "
            "with the new config (finished data tasks are kept, other outputs are moved to superseded/)"
        )
    _supersede(study, kept_tasks_when_forced(full if full is not None else stored, wanted))
    write_json_atomic(path, wanted)


def _with_defaults(stored: dict) -> dict | None:
    """A stored study config with every field it lacks at its default (fields added to `StudyConfig`
    after the study started), or None when it is not a valid config of this version."""
    try:
        return json.loads(json.dumps(build_config(StudyConfig, stored).to_dict()))
    except (ValueError, TypeError):
        return None


SEED_LISTS = ("training_seeds", "sampling_seeds")


def grown_by_seeds(old: dict, new: dict) -> bool:
    """Is `new` the head-comparison study `old` with seeds appended (each seed list of `old` a prefix of
    `new`'s, at least one longer) and nothing else changed? Then every finished task of `old` is one of
    `new`'s with the same output: tasks depend on the config and their own seeds, a deterministic
    head runs under the first sampling seed, and the rollouts' seeds do not depend on the seed lists."""
    if old.get("latent") is not None or new.get("latent") is not None:
        return False
    rest = [k for k in set(old) | set(new) if k not in SEED_LISTS]
    if any(old.get(k) != new.get(k) for k in rest):
        return False
    prefixes = all(list(new[k][: len(old[k])]) == list(old[k]) for k in SEED_LISTS)
    return prefixes and any(len(new[k]) > len(old[k]) for k in SEED_LISTS)


def _supersede(study: Path, kept: set[str] = frozenset(), keep_all: bool = False) -> Path:
    """Move the outputs of tasks that must run again to `superseded/<n>/` (nothing is deleted). With
    `keep_all` (a study grown by seeds) only the worst-episode strips, drawn over all runs, move; the
    old study.json is copied there too."""
    root = study / "superseded"
    n = 0
    while (root / str(n)).exists():
        n += 1
    target = root / str(n)
    if keep_all:
        make_dirs(target)
        shutil.copy2(study / "study.json", target / "study.json")
        if (study / "failures").exists():
            os.replace(study / "failures", target / "failures")
        return target
    keep = {"data"} if "collect" in kept else set()
    if "ue" in kept:
        keep |= {"ue", "work/ue_ckpt", "logs/ue"}
    # DAgger rollouts live under data/ but come from the study's policies, which never survive a forced
    # resume: they move with them, or the new rounds would count them as done and train on them.
    for rollouts in ("dagger", "refiner_dagger"):
        if "data" in keep and (study / "data" / rollouts).exists():
            make_dirs(target / "data")
            os.replace(study / "data" / rollouts, target / "data" / rollouts)
    for entry in ("study.json", "ue", "seeds", "runs", "runs.jsonl", "summary.json", "report.md", "work", "logs",
                  "failures", "ds_by_head.png", "l2_by_horizon.png", "performance_profile.png",
                  "trajectories.png", "data"):  # fmt: skip
        if entry in keep or not (study / entry).exists():
            continue
        if entry in ("work", "logs"):
            for child in sorted((study / entry).iterdir()):
                rel = f"{entry}/{child.name}"
                if rel not in keep:
                    make_dirs(target / entry)
                    os.replace(child, target / rel)
            continue
        make_dirs(target)
        if entry == "study.json":
            shutil.copy2(study / entry, target / entry)
        else:
            os.replace(study / entry, target / entry)
    return target


def record_finished_runs(study: Path, tasks: list[Task]) -> None:
    """Append every finished run that runs.jsonl does not list yet (the single writer of that file)."""
    runs_file = study / "runs.jsonl"
    listed = {r["run_id"] for r in read_jsonl(runs_file)}
    for task in tasks:
        rid = task.params.get("run_id")
        if rid is not None and rid not in listed and run_path(study, rid).exists():
            append_jsonl(runs_file, json.loads(run_path(study, rid).read_text()))
            listed.add(rid)


def run_study(
    study_dir: str | Path,
    config: StudyConfig,
    *,
    workers: int = 2,
    executor: str = "local",
    slurm: dict | None = None,
    progress: Callable[[str], None] | str | None = print,
    progress_every: float = 30.0,
    force: bool = False,
    imports: list[str] | tuple[str, ...] = (),
) -> StudyResult:
    """Run (or resume) the study in `study_dir`. `progress`: None (silent), a callable that gets a
    progress line at most every `progress_every` seconds, or "live" (a live table in the terminal).
    `imports` are plug-in modules every worker imports (the modules of the config's heads are added
    automatically)."""
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: expected an int >= 1, got {workers!r}")
    if executor not in EXECUTORS:
        raise ValueError(f"executor: expected one of {list(EXECUTORS)}, got {executor!r}")
    if not (progress is None or progress == "live" or callable(progress)):
        raise ValueError(f"progress: expected None, 'live' or a callable, got {progress!r}")
    study = Path(study_dir)
    # Everything the config names is built at toy sizes first: a bad head or preset fails now.
    modules = [*imports, *[m for m in validate_study(config) if m not in imports]]
    check_study_folder(study)
    make_dirs(study, field="out")
    with _exclusive(study):  # before the config check: --force moves outputs
        prepare_study(study, config, force=force)
        return _run_locked(study, config, workers, executor, slurm, progress, progress_every, modules)


@contextlib.contextmanager
def _exclusive(study: Path):
    """One orchestrator per study folder: a second one would race the first on the same outputs."""
    import fcntl

    with open(study / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise ValueError(
                f"study {study}: expected no other process running it, but its lock is held"
            ) from err
        yield


def _run_locked(
    study: Path,
    config: StudyConfig,
    workers: int,
    executor: str,
    slurm: dict | None,
    progress,
    progress_every: float,
    modules,
) -> StudyResult:
    from studies.progress import StudyView
    from studies.report import write_report
    from studies.summary import planned_runs, summarize_study

    tasks = plan_tasks(config)
    # A free worker takes the ready task with the longest estimated chain behind it (studies.schedule).
    level = bottom_levels(tasks, lambda t: task_cost(t, config))
    position = {t.id: i for i, t in enumerate(tasks)}
    record_finished_runs(study, tasks)
    config_dict = json.loads(json.dumps(config.to_dict()))
    done = {t.id for t in tasks if is_done(study, t)}
    pending = [t for t in tasks if t.id not in done]
    kill_after = int(os.environ.get(KILL_AFTER_ENV, "0") or 0)
    finished_now = 0
    say = progress if callable(progress) else (print if progress == "live" else (lambda _msg: None))
    say(
        f"study {study}: {len(tasks)} tasks, {len(done)} already done, {len(pending)} to run on {workers} worker(s)"
    )
    view = None
    if progress is not None:
        view = StudyView(study, tasks, workers, live=progress == "live", say=say, every_s=progress_every)
    # The live view polls status files; without a view the loop only wakes when a task finishes.
    poll_s = None if view is None else 0.5

    pool = _make_executor(executor, study, workers, slurm)
    running: dict[Future, Task] = {}
    try:
        while pending or running:
            ready = by_priority([t for t in pending if all(d in done for d in t.deps)], level, position)
            for task in ready[: max(0, workers - len(running))]:
                pending.remove(task)
                future = pool.submit(run_task, str(study), config_dict, task.id, _threads_for(task), modules)
                running[future] = task
                if view is not None:
                    view.task_started(task.id)
            if not running:
                blocked = [t.id for t in pending]
                raise RuntimeError(f"study: tasks {blocked} wait for dependencies that cannot finish")
            finished, _ = wait(list(running), timeout=poll_s, return_when=FIRST_COMPLETED)
            for future in finished:
                task = running.pop(future)
                future.result()  # a failed task stops the study with its own error
                done.add(task.id)
                finished_now += 1
                record_finished_runs(study, [task])
                if view is not None:
                    view.task_finished(task.id)
                if kill_after and finished_now >= kill_after:
                    sys.stdout.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
            if view is not None:
                view.render(len(done), [t.id for t in running.values()], [t.id for t in pending])
        if view is not None:
            view.render(len(done), [], [], force=True)
    finally:
        pool.shutdown()
        if view is not None:
            view.close()

    runs = read_jsonl(study / "runs.jsonl")
    if config.latent is not None:
        from studies.latent_report import summarize_latent_study, write_latent_report

        summary = summarize_latent_study(study, runs, config)
        report_fn = write_latent_report
    else:
        runs = planned_runs(runs, config)  # without copies of a deterministic head's runs (older folders)
        summary, report_fn = summarize_study(runs, config), write_report
    summary_path = study / "summary.json"
    write_json_atomic(summary_path, summary)
    report_path = report_fn(study, config, summary, runs)
    return StudyResult(study_dir=study, summary_path=summary_path, report_path=report_path, summary=summary)


def load_or_build_config(profile: str, config_file: str | None, overrides: dict | None) -> StudyConfig:
    file_overrides: dict = {}
    if config_file is not None:
        import yaml

        path = Path(config_file)
        if not path.is_file():
            raise ValueError(f"--config: expected an existing YAML/JSON file, got {path}")
        try:
            file_overrides = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
            reason = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ValueError(
                f"--config {path}: expected valid YAML/JSON, got a syntax error{at} ({reason})"
            ) from None
        except UnicodeDecodeError:
            raise ValueError(f"--config {path}: expected a YAML/JSON text file, got binary content") from None
        if not isinstance(file_overrides, dict):
            raise ValueError(
                f"--config {path}: expected a mapping of study fields, got {type(file_overrides).__name__}"
            )
        profile = file_overrides.pop("profile", profile)
    merged = {**file_overrides}
    for k, v in (overrides or {}).items():
        base = merged.get(k, {})
        merged[k] = {**base, **v} if isinstance(v, dict) and isinstance(base, dict) else v
    return load_study_config(profile, merged)
