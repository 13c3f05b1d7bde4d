"""Which ready task a free worker takes: the one with the longest chain of work still behind it.

A study is a graph of tasks (collect -> UE -> AE -> DAgger rounds -> refiner -> evaluations). With
fewer workers than ready tasks, the plan order (seed by seed) lets two seeds' refiners and evaluations
run while the third seed's AE has not started, and that seed's whole chain then runs alone at the end.
List scheduling by "bottom level" (a task's estimated cost plus the longest estimated path of tasks
that wait for it, HLFET) starts the long chains first and keeps both workers busy until the end: on the
demo profile's measured task times (2 workers) the makespan goes from 28.3 to 24.7 min, the bound
being half the total work, 24.0 min (BENCHMARKS.md, "Study scheduling").

Only the order of independent tasks changes. Every task's numbers are fixed by its seeds and its own
thread count (`studies.runner._threads_for`), so a study's results do not depend on it.

Costs are rough seconds per task on a 2-core Intel VM, from the demo's status files
(`work/status/*.json`, `elapsed_s`); only their ratios matter, and a wrong estimate only costs time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from studies.config import StudyConfig
from studies.tasks import Task

# Seconds per unit of work, measured on the demo profile (2 workers, 1 thread per task).
COLLECT_S_PER_EPISODE = 1.6
UE_S_PER_STEP = 0.2
AE_S_PER_STEP = 0.2
AE_FIXED_S = 30.0  # loading, the first epoch's memo of the UE's outputs, export
ROLLOUT_S = 2.5  # one DAgger rollout of a learned policy, expert labels included
REFINE_S_PER_STEP = 0.25
EVAL_S_PER_EPISODE = 2.8
REFINEMENT_DIAGNOSTICS_S = 50.0  # prior vs refined, steps, K, knockouts: once per refining model
BASELINE_S_PER_EPISODE = 1.0
OTHER_S = 30.0  # any other kind (failure strips, the latent study's stages)


def _rollouts(spec, n_scenarios: int) -> int:
    scenarios = len(spec.scenarios) if spec.scenarios is not None else n_scenarios
    extra = spec.extra_episodes * len(spec.extra_scenarios)
    return spec.episodes * scenarios + extra


def task_cost(task: Task, config: StudyConfig) -> float:
    """Estimated seconds of `task` under `config` (one thread, the demo's machine)."""
    n_scenarios = len(config.data.scenarios)
    p = task.params
    if task.kind == "collect":
        per_scenario = {
            "train": config.data.train_episodes,
            "val": config.data.val_episodes,
            "test": config.data.test_episodes,
        }.get(p.get("split"), config.data.train_episodes)
        return COLLECT_S_PER_EPISODE * per_scenario * n_scenarios
    if task.kind == "ue":
        return UE_S_PER_STEP * config.pretrain_ue_steps
    if task.kind == "ae":
        steps = config.ae.steps if p.get("round_index", 0) == 0 else config.dagger.steps
        return AE_FIXED_S + AE_S_PER_STEP * steps
    if task.kind == "dagger":
        return ROLLOUT_S * _rollouts(config.dagger, n_scenarios)
    if task.kind == "rdagger":
        return ROLLOUT_S * _rollouts(config.refiner_dagger, n_scenarios)
    if task.kind == "refine":
        return REFINE_S_PER_STEP * config.refiner.steps
    if task.kind == "eval":
        cost = EVAL_S_PER_EPISODE * config.eval.episodes * n_scenarios
        head = p.get("head")
        if head != "mlp" and p.get("sampling_seed") == config.head_sampling_seeds(head)[0]:
            cost += REFINEMENT_DIAGNOSTICS_S
        return cost
    if task.kind == "baseline":
        return BASELINE_S_PER_EPISODE * config.eval.episodes * n_scenarios
    return OTHER_S


def bottom_levels(tasks: Iterable[Task], cost: Callable[[Task], float]) -> dict[str, float]:
    """Each task's cost plus the longest cost path through the tasks that (transitively) wait for it.

    `tasks` must be in an order that respects dependencies (as `plan_tasks` returns them)."""
    tasks = list(tasks)
    known = {t.id for t in tasks}
    dependents: dict[str, list[str]] = {t.id: [] for t in tasks}
    for t in tasks:
        for d in t.deps:
            if d not in known:
                raise ValueError(f"task {t.id!r}: depends on {d!r}, which is not a task of the study")
            dependents[d].append(t.id)
    level: dict[str, float] = {}
    for t in reversed(tasks):  # every dependent comes after its dependencies
        if any(c not in level for c in dependents[t.id]):
            raise ValueError(f"tasks: expected dependencies before their dependents, got {t.id!r} first")
        level[t.id] = cost(t) + max((level[c] for c in dependents[t.id]), default=0.0)
    return level


def by_priority(ready: list[Task], level: dict[str, float], position: dict[str, int]) -> list[Task]:
    """`ready` sorted for submission: the longest remaining chain first, then plan order."""
    return sorted(ready, key=lambda t: (-level[t.id], position[t.id]))


def replay(
    tasks: list[Task], seconds: dict[str, float], workers: int, order: Callable[[list[Task]], list[Task]]
) -> float:
    """The makespan (s) of list-scheduling `tasks` with the given durations on `workers` workers: each
    time a worker is free it takes the first ready task of `order(ready)`. A model of the runner (the
    durations are taken as given; two tasks sharing two cores run slower than either alone)."""
    if workers < 1:
        raise ValueError(f"workers: expected >= 1, got {workers}")
    missing = [t.id for t in tasks if t.id not in seconds]
    if missing:
        raise ValueError(f"seconds: expected a duration for every task, missing {missing}")
    now, done, running, pending = 0.0, set(), [], list(tasks)
    while pending or running:
        ready = order([t for t in pending if all(d in done for d in t.deps)])
        for task in ready[: workers - len(running)]:
            pending.remove(task)
            running.append((now + seconds[task.id], task.id))
        if not running:
            raise ValueError(f"tasks: {[t.id for t in pending]} wait for dependencies that are not tasks")
        running.sort()
        now, finished = running.pop(0)
        done.add(finished)
    return now
