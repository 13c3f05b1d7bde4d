"""Replay a finished study's task times under the runner's two orders (the plan's, and the longest
remaining chain first) for any number of workers: how long the study would take, and the bound of half
the total work per worker (BENCHMARKS.md, "Study scheduling").

    python examples/schedule_replay.py runs/demo --workers 1 2 4

Durations are the tasks' `elapsed_s` in `work/status/` (measured while the tasks shared the machine as
they did in that run), so this models the ordering, not contention.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from studies.config import StudyConfig, build_config
from studies.schedule import bottom_levels, by_priority, replay, task_cost
from studies.tasks import plan_tasks


def main(argv: list[str] | None = None) -> dict[int, tuple[float, float]]:
    """{workers: (plan order, longest chain first)} makespans in seconds; prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="a finished study folder")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    args = parser.parse_args(argv)
    config = build_config(StudyConfig, json.loads((args.study / "study.json").read_text()))
    tasks = plan_tasks(config)
    status = args.study / "work" / "status"
    seconds = {}
    for t in tasks:
        path = status / f"{t.id.replace(':', '_')}.json"
        if not path.exists():
            raise SystemExit(f"{path}: expected the status of task {t.id} (is the study finished?)")
        seconds[t.id] = float(json.loads(path.read_text())["elapsed_s"])
    position = {t.id: i for i, t in enumerate(tasks)}
    level = bottom_levels(tasks, lambda t: task_cost(t, config))
    total = sum(seconds.values())
    print(f"{args.study}: {len(tasks)} tasks, {total / 60:.1f} task-minutes")
    print("| workers | plan order (min) | longest chain first (min) | bound: work / workers (min) |")
    print("|---|---|---|---|")
    result = {}
    for w in args.workers:
        plan = replay(tasks, seconds, w, lambda ready: sorted(ready, key=lambda t: position[t.id]))
        ranked = replay(tasks, seconds, w, lambda ready: by_priority(ready, level, position))
        print(f"| {w} | {plan / 60:.1f} | {ranked / 60:.1f} | {total / w / 60:.1f} |")
        result[w] = (plan, ranked)
    return result


if __name__ == "__main__":
    main()
