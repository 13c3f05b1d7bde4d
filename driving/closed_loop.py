"""Closed-loop evaluation: drive any `automot.types.Policy` through scenario episodes and score them.

Each step the world's observation goes to `policy.plan`, the returned waypoints (and route points, if
any) go through the tracking controller, and the action steps the simulator. An episode ends on a
collision, on reaching the destination, on running out of time, or after a long excursion off the road;
it is scored the Bench2Drive way (`driving.scoring`). Records are appended to a JSON-lines file as each
episode finishes, and a rerun skips the (scenario, seed) pairs already in it, so an interrupted study
resumes where it stopped. Each record names the policy that drove it (`policy_identity`: a digest of
its weights and settings where the policy has `identity()`); a rerun with another policy is refused
rather than handed the first one's episodes. With `workers > 1` episodes run in spawned processes; each episode depends
only on its seed, so the records are the same for any number of workers.

    records = evaluate(ExpertPolicy(), "roundabout", split_seeds("test", 20), records_path="runs/exp.jsonl")
    summarize(records)  # {"ds": ..., "sr": ..., "route_completion": ..., "infractions": {...}, ...}
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from automot import spec
from automot.checks import check_tensor
from automot.io import append_jsonl, read_jsonl
from automot.types import EpisodeInfo, PolicyOutput
from driving.config import SensorConfig, SimConfig
from driving.controller import Tracker, TrackerConfig
from driving.scenarios import Scenario, build_scenario
from driving.scoring import EpisodeRecord, finalize


@dataclass
class EvalConfig:
    sim: SimConfig = field(default_factory=SimConfig)
    sensors: SensorConfig = field(default_factory=SensorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    workers: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"EvalConfig.workers: expected an int >= 1, got {self.workers!r}")


def policy_name(policy) -> str:
    return str(getattr(policy, "name", type(policy).__name__))


def policy_identity(policy) -> str:
    """`policy.identity()` (a digest of what its plans depend on: weights, settings, sampling seed) or
    "" for a policy without one (then only its name tells runs apart)."""
    identity = getattr(policy, "identity", None)
    return str(identity()) if callable(identity) else ""


def check_resumable(record: EpisodeRecord, name: str, identity: str, source) -> None:
    """Refuse a stored episode that another policy drove (by name, or by identity when both have one)."""
    other = (record.policy != name) or (
        bool(record.policy_id) and bool(identity) and record.policy_id != identity
    )
    if other:
        raise ValueError(
            f"records {source}: expected episodes of policy {name!r} (identity {identity[:16] or 'none'}) "
            f"to resume, found {record.scenario}:{record.seed} driven by {record.policy!r} (identity "
            f"{record.policy_id[:16] or 'none'}). Use another records file for another policy"
        )


def _check_output(out: PolicyOutput) -> tuple[np.ndarray, np.ndarray | None]:
    import torch

    if not isinstance(out, PolicyOutput):
        raise ValueError(f"policy.plan: expected a PolicyOutput, got {type(out).__name__}")
    wp = np.asarray(out.waypoints, dtype=np.float64)
    check_tensor("PolicyOutput.waypoints", torch.from_numpy(wp), (spec.NUM_WAYPOINTS, 2))
    route = None
    if out.route is not None:
        route = np.asarray(out.route, dtype=np.float64)
        check_tensor("PolicyOutput.route", torch.from_numpy(route), (None, 2))
    return wp, route


def run_episode(policy, world, seed: int, tracker: Tracker, frames_out: list | None = None) -> EpisodeRecord:
    """Drive one episode of `world`'s scenario with `seed`; `frames_out` collects camera frames."""
    start = time.perf_counter()
    observation = world.reset(seed)
    policy.reset(EpisodeInfo(scenario=world.scenario.name, seed=seed, env=world))
    tracker.reset()
    infractions = []
    reasoning = []  # the policy's reasoning text each time it changes (e.g. at every UE refresh)
    outcome = None
    while outcome is None:
        out = policy.plan(observation)
        waypoints, route = _check_output(out)
        text = getattr(out, "reasoning", None)
        if text is not None and (not reasoning or reasoning[-1]["text"] != text):
            reasoning.append({"step": world.step_index, "time_s": round(world.time_s, 3), "text": text})
        command = tracker(waypoints, float(world.ego.speed), route)
        result = world.step(command.action)
        infractions += [{"kind": e.kind, "step": e.step, "time_s": e.time_s} for e in result.events]
        if result.done:
            outcome = result.outcome
        else:
            observation = world.observe()
    if outcome == "timeout":
        infractions.append({"kind": "timeout", "step": world.step_index, "time_s": world.time_s})
    if frames_out is not None:
        frames_out.extend(world.frames)
    record = EpisodeRecord(
        scenario=world.scenario.name,
        seed=int(seed),
        policy=policy_name(policy),
        route_completion=100.0 * world.progress.completion,
        infractions=infractions,
        outcome=outcome,
        frames=world.step_index,
        sim_time_s=world.time_s,
        wall_time_s=time.perf_counter() - start,
        extra={
            "scenario_config": world.scenario.describe(),
            **({"reasoning": reasoning} if reasoning else {}),
            "mean_speed": float(np.mean([state.speed for state in world.log])),  # m/s over the logged steps
            # A wrapper that watched the episode (e.g. driving.shadow.ExpertShadow) adds its summary.
            **({"shadow": policy.episode_summary()} if hasattr(policy, "episode_summary") else {}),
        },
    )
    return finalize(record)


def _resolve(scenario: Scenario | str) -> Scenario:
    return build_scenario(scenario) if isinstance(scenario, str) else scenario


_WORKER: dict = {}


def _worker_init(policy, scenario, config) -> None:
    import torch

    from driving.world import World

    torch.set_num_threads(1)
    _WORKER["policy"] = policy
    _WORKER["world"] = World(scenario, sim=config.sim, sensors=config.sensors)
    _WORKER["tracker"] = Tracker(config.sim, config.tracker)


def _worker_run(seed: int) -> dict:
    return run_episode(_WORKER["policy"], _WORKER["world"], seed, _WORKER["tracker"]).to_json()


def evaluate(
    policy,
    scenario: Scenario | str,
    seeds: list[int],
    config: EvalConfig | None = None,
    records_path: str | Path | None = None,
    progress: bool = False,
    on_episode: Callable[[EpisodeRecord], None] | None = None,
) -> list[EpisodeRecord]:
    """Run `policy` on `scenario` for every seed; returns the records of all `seeds` (resumed ones included).
    `on_episode(record)` is called as each new episode finishes."""
    from driving.world import World

    config = config or EvalConfig()
    scenario = _resolve(scenario)
    # the identity (a digest of weights: seconds for a full-size UE) only matters for a records file
    name, identity = policy_name(policy), policy_identity(policy) if records_path is not None else ""
    done: dict[tuple[str, int], EpisodeRecord] = {}
    if records_path is not None:
        for row in read_jsonl(records_path):
            record = EpisodeRecord.from_json(row)
            check_resumable(record, name, identity, records_path)
            done[(record.scenario, record.seed)] = record
    todo = [s for s in seeds if (scenario.name, int(s)) not in done]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=f"{policy_name(policy)} on {scenario.name}", unit="ep")

    def finish(record: EpisodeRecord) -> None:
        record.policy_id = identity
        done[(record.scenario, record.seed)] = record
        if records_path is not None:
            append_jsonl(records_path, record.to_json())
        if bar is not None:
            bar.update(1)
        if on_episode is not None:
            on_episode(record)

    if config.workers == 1 or len(todo) <= 1:
        if todo:
            world = World(scenario, sim=config.sim, sensors=config.sensors)
            tracker = Tracker(config.sim, config.tracker)
            try:
                for seed in todo:
                    finish(run_episode(policy, world, int(seed), tracker))
            finally:
                world.close()
    else:
        # Spawned workers (not forked: a forked pygame/torch process is not safe) report back as episodes finish;
        # a worker that dies raises BrokenProcessPool here instead of hanging the study.
        workers = min(config.workers, len(todo))
        with ProcessPoolExecutor(
            workers,
            mp_context=mp.get_context("spawn"),
            initializer=_worker_init,
            initargs=(policy, scenario, config),
        ) as pool:
            for row in pool.map(_worker_run, [int(s) for s in todo]):
                finish(EpisodeRecord.from_json(row))
    if bar is not None:
        bar.close()
    return [done[(scenario.name, int(s))] for s in seeds]


def record_gifs(
    policy,
    scenario: Scenario | str,
    seeds: list[int],
    out_dir: str | Path,
    config: EvalConfig | None = None,
    records_path: str | Path | None = None,
) -> list[EpisodeRecord]:
    """Like `evaluate` in one process, also saving each episode's camera frames as `<out_dir>/<policy>-<scenario>-<seed>.gif`."""
    from driving.viz import save_gif
    from driving.world import World

    config = config or EvalConfig()
    scenario = _resolve(scenario)
    identity = policy_identity(policy) if records_path is not None else ""
    world = World(scenario, sim=config.sim, sensors=config.sensors)
    tracker = Tracker(config.sim, config.tracker)
    records = []
    try:
        for seed in seeds:
            frames: list = []
            record = run_episode(policy, world, int(seed), tracker, frames_out=frames)
            gif = save_gif(
                frames,
                Path(out_dir) / f"{policy_name(policy)}-{scenario.name}-{int(seed)}.gif",
                fps=config.sim.policy_hz,
            )
            record.extra["gif"] = str(gif)
            record.policy_id = identity
            if records_path is not None:
                append_jsonl(records_path, record.to_json())
            records.append(record)
    finally:
        world.close()
    return records
