"""Study scheduling: bottom levels by hand, the demo's long chains first, and the runner using them."""

from concurrent.futures import Future

import pytest

import studies.report
import studies.runner
import studies.summary
from studies.config import load_study_config
from studies.schedule import bottom_levels, by_priority, replay, task_cost
from studies.tasks import Task, plan_tasks


def _hand_graph():
    # a -> b -> d, a -> c
    costs = {"a": 1.0, "b": 2.0, "c": 10.0, "d": 4.0}
    tasks = [
        Task("a", "x"),
        Task("b", "x", deps=("a",)),
        Task("c", "x", deps=("a",)),
        Task("d", "x", deps=("b",)),
    ]
    return tasks, costs


def test_bottom_levels_equal_the_longest_cost_path_computed_by_hand():
    tasks, costs = _hand_graph()
    level = bottom_levels(tasks, lambda t: costs[t.id])
    assert level == {"d": 4.0, "b": 6.0, "c": 10.0, "a": 11.0}  # a: 1 + max(b 6, c 10)


def test_bottom_levels_refuse_unknown_dependencies_and_dependents_listed_first():
    tasks, costs = _hand_graph()
    with pytest.raises(ValueError, match=r"'b'.*'zz'"):
        bottom_levels([*tasks[:1], Task("b", "x", deps=("zz",))], lambda t: 1.0)
    with pytest.raises(ValueError, match="dependencies before their dependents"):
        bottom_levels([tasks[3], *tasks[:3]], lambda t: costs[t.id])


def test_ties_keep_plan_order_and_longer_chains_go_first():
    tasks, costs = _hand_graph()
    level = bottom_levels(tasks, lambda t: costs[t.id])
    position = {t.id: i for i, t in enumerate(tasks)}
    assert [t.id for t in by_priority([tasks[1], tasks[2]], level, position)] == ["c", "b"]
    same = {k: 1.0 for k in level}
    assert [t.id for t in by_priority([tasks[2], tasks[1]], same, position)] == ["b", "c"]


def test_the_demo_starts_the_third_seeds_ae_before_the_first_seeds_refiner():
    """The slow tail this ordering removes: in plan order, seed 2's AE waits for seed 0's refiner."""
    config = load_study_config("demo")
    tasks = plan_tasks(config)
    by_id = {t.id: t for t in tasks}
    level = bottom_levels(tasks, lambda t: task_cost(t, config))
    position = {t.id: i for i, t in enumerate(tasks)}
    ready = [by_id["refine:0:diffusion"], by_id["eval:mlp:0:0"], by_id["ae:2"]]
    assert [t.id for t in by_priority(ready, level, position)] == [
        "ae:2",
        "refine:0:diffusion",
        "eval:mlp:0:0",
    ]
    # the estimates scale with the config: twice the refiner steps, twice the refiner's cost
    longer = load_study_config("demo", overrides={"refiner": {"steps": 2 * config.refiner.steps}})
    refine = by_id["refine:0:diffusion"]
    assert task_cost(refine, longer) == pytest.approx(2 * task_cost(refine, config))


class _InstantPool:
    """An executor that records what it is given and finishes each task at once (nothing runs)."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, fn, study, config, task_id, threads, modules) -> Future:
        self.submitted.append(task_id)
        future = Future()
        future.set_result(None)
        return future

    def shutdown(self) -> None:
        pass


def test_the_runner_submits_by_priority(tmp_path, monkeypatch):
    """One worker, the demo's plan: every seed's behaviour-cloning AE before the first DAgger round
    (plan order would run seed 0's whole chain first)."""
    pool = _InstantPool()
    monkeypatch.setattr(studies.runner, "_make_executor", lambda *args: pool)
    monkeypatch.setattr(studies.summary, "planned_runs", lambda runs, config: runs)
    monkeypatch.setattr(studies.summary, "summarize_study", lambda runs, config: {})
    monkeypatch.setattr(studies.report, "write_report", lambda study, config, summary, runs: study / "r.md")
    config = load_study_config("demo")
    studies.runner.run_study(tmp_path / "study", config, workers=1, progress=None)
    tasks = plan_tasks(config)
    assert sorted(pool.submitted) == sorted(t.id for t in tasks)  # each task once
    order = {tid: i for i, tid in enumerate(pool.submitted)}
    assert max(order[f"ae:{s}"] for s in config.training_seeds) < min(
        order[f"dagger:{s}:1"] for s in config.training_seeds
    )
    for t in tasks:  # and dependencies still come first
        assert all(order[d] < order[t.id] for d in t.deps), t.id


def test_replay_makespans_computed_by_hand():
    tasks, costs = _hand_graph()
    in_order = lambda ready: sorted(ready, key=lambda t: t.id)  # noqa: E731
    assert replay(tasks, costs, 1, in_order) == 17.0  # one worker: all the work
    assert replay(tasks, costs, 2, in_order) == 11.0  # a, then c (10) beside b + d (6)
    # three independent tasks, the long one last in plan order: 3 + 6 in plan order, 6 longest first
    flat = [Task("x", "k"), Task("y", "k"), Task("z", "k")]
    seconds = {"x": 3.0, "y": 3.0, "z": 6.0}
    level = bottom_levels(flat, lambda t: seconds[t.id])
    position = {t.id: i for i, t in enumerate(flat)}
    assert replay(flat, seconds, 2, lambda ready: sorted(ready, key=lambda t: position[t.id])) == 9.0
    assert replay(flat, seconds, 2, lambda ready: by_priority(ready, level, position)) == 6.0
    with pytest.raises(ValueError, match=r"missing \['z'\]"):
        replay(flat, {"x": 1.0, "y": 1.0}, 2, in_order)
