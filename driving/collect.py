"""`automot collect`: run the expert and write a labelled demonstration dataset.

Layout of DIR:  index.json (config + one entry per finished episode) and shards/<scenario>-<seed>.npz
(`driving.shards`). Episode -> seed is fixed by the config (split, seed_start, episodes), each episode
depends only on its seed, and shards are byte-deterministic, so the dataset is identical whatever the
number of workers. Shards are written atomically as episodes finish and the index is rewritten
atomically after each one; a rerun with the same config verifies the shards already there (against
the index's sha256: a failing shard is named, moved aside and collected again), rebuilds the index from
them and runs only the missing episodes (no episode is duplicated or lost). A config with more
episodes or scenarios extends the dataset; any other difference, a foreign folder or a file is refused.

Samples: every `sample_every` policy steps of an episode whose 3 s future is logged (a completed episode
is driven 3 s past its destination for that). An episode that ends in a collision keeps only the
samples whose future ends before it. With `async_fraction` > 0 a share of the samples is asynchronous
(NuSync): the RGB history ends 1 or 2 history intervals before the sample's step.

With `labeled=False` the episodes are written as observations only (`driving.shards.OBSERVATION_FIELDS`:
no expert plan, meta-actions, agent futures or scene text), one sample per `sample_every` steps over
the whole log (no future is needed), and the index says `"labeled": false`: raw driving video for
learning without labels (`latent/`).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from automot import spec
from automot.checks import check_choice
from automot.config import build_config
from automot.io import make_dirs, write_json_atomic
from driving.collect_folder import INDEX_NAME, SHARD_DIR, prepare_out, remove_killed_writes
from driving.config import BEV_OPTIONS, LabelConfig, SensorConfig, SimConfig, check_trail
from driving.scenarios import SCENARIOS, SEED_SPLITS, build_scenario, split_seeds
from driving.shards import FORMAT_VERSION, read_shard, shard_fields, write_shard


@dataclass
class CollectConfig:
    scenarios: list[str] = field(default_factory=lambda: ["highway", "merge", "roundabout", "intersection"])
    episodes: int = 4  # per scenario
    split: str = "train"
    seed_start: int = 0
    sample_every: int = 1  # policy steps between samples
    async_fraction: float = 0.0
    async_offsets: tuple[int, ...] = (1, 2)  # in history intervals (SensorConfig.frame_interval_s)
    scenario_overrides: dict[str, dict] = field(default_factory=dict)
    labeled: bool = True  # False: observations only (no expert labels written)
    sim: SimConfig = field(default_factory=SimConfig)
    sensors: SensorConfig = field(default_factory=SensorConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    # driving.expert.ExpertConfig fields of the expert that drives and labels (default: the defaults)
    expert: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.sim, dict):
            self.sim = SimConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.sim.items()})
        if isinstance(self.sensors, dict):
            self.sensors = SensorConfig(**self.sensors)
        if isinstance(self.labels, dict):
            self.labels = LabelConfig(**self.labels)
        self.scenarios = list(self.scenarios)
        self.async_offsets = tuple(self.async_offsets)
        if not isinstance(self.labeled, bool):
            raise ValueError(f"CollectConfig.labeled: expected True or False, got {self.labeled!r}")
        if not self.scenarios or len(set(self.scenarios)) != len(self.scenarios):
            raise ValueError(
                f"CollectConfig.scenarios: expected distinct scenario names, got {self.scenarios}"
            )
        for name in self.scenarios:
            check_choice("CollectConfig.scenarios", name, SCENARIOS.names())
        for name in self.scenario_overrides:
            check_choice("CollectConfig.scenario_overrides", name, self.scenarios)
        check_choice("CollectConfig.split", self.split, list(SEED_SPLITS))
        for name in ("episodes", "sample_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"CollectConfig.{name}: expected an int >= 1, got {value!r}")
        if not 0.0 <= self.async_fraction <= 1.0:
            raise ValueError(
                f"CollectConfig.async_fraction: expected a value in [0, 1], got {self.async_fraction}"
            )
        if not self.async_offsets or min(self.async_offsets) < 1:
            raise ValueError(f"CollectConfig.async_offsets: expected positive ints, got {self.async_offsets}")
        split_seeds(self.split, self.episodes, self.seed_start)  # validates the range
        check_trail(self.sensors.bev, self.sim)
        self.expert = dict(self.expert)
        self.expert_config()  # validates the names and values

    def expert_config(self):
        """The `driving.expert.ExpertConfig` of the expert that drives and labels."""
        from driving.expert import ExpertConfig

        return build_config(ExpertConfig, self.expert)

    def to_json(self) -> dict:
        out = json.loads(json.dumps(asdict(self)))
        if not out["expert"]:  # the default expert: folders collected before the field existed still match
            del out["expert"]
        bev = out["sensors"]["bev"]
        for name, default in BEV_OPTIONS.items():  # likewise for what the BEV shows (blinkers, trails)
            if bev[name] == default:
                del bev[name]
        return out

    def episodes_plan(self) -> list[tuple[str, int]]:
        seeds = split_seeds(self.split, self.episodes, self.seed_start)
        return [(name, seed) for name in self.scenarios for seed in seeds]

    def dims(self) -> dict[str, int]:
        c, b = self.sensors.camera, self.sensors.bev
        return {
            "H": c.height,
            "W": c.width,
            "Hb": b.height,
            "Wb": b.width,
            "T": self.sensors.history_frames,
            "A": self.labels.max_agents,
        }


def shard_name(scenario: str, seed: int) -> str:
    return f"{SHARD_DIR}/{scenario}-{seed:07d}.npz"


# --------------------------------------------------------------------------------------------- one episode
def episode_arrays(
    world, config: CollectConfig, outcome: str, completion: float, cut_last: bool
) -> dict[str, np.ndarray]:
    """Cut the samples of a finished episode (its log, frames and route) into shard arrays; with `cut_last`
    the last logged step (a crash) is no one's future. Unlabeled: every step is a sample, no labels."""
    from driving.labels import agent_labels, meta_actions, route_labels, waypoint_labels
    from driving.language import navigation_prompt, scene_text
    from driving.sensors.observation import ego_history, render_bev, target_point

    sim, sensors = config.sim, config.sensors
    per_wp = sim.steps(spec.WAYPOINT_DT_S)
    horizon = per_wp * spec.NUM_WAYPOINTS
    interval = sim.steps(sensors.frame_interval_s)
    last = len(world.log) - 1
    if cut_last and config.labeled:
        last -= 1  # the crash step's future is not a demonstration
    labeled = config.labeled
    end = last - horizon + 1 if labeled else last + 1
    rng = np.random.default_rng(np.random.SeedSequence([int(world.seed), 97]))
    rows: dict[str, list] = {k: [] for k in (
        "rgb_history_idx", "rgb_idx", "bev", "ego_state", "ego_history", "target_point", "waypoints", "route",
        "lateral", "longitudinal", "longitudinal3", "agent_boxes", "agent_mask", "ego_size", "prompt",
        "scene_text", "step", "ue_step", "time_s",
    )}  # fmt: skip
    length, width = world.ego_size
    for index in range(0, end, config.sample_every):
        offset = 0
        if config.async_fraction > 0 and rng.random() < config.async_fraction:
            offset = int(rng.choice(config.async_offsets)) * interval
        ue_index = max(index - offset, 0)
        state = world.log[index]
        rows["rgb_history_idx"].append(
            [max(ue_index - k * interval, 0) for k in range(sensors.history_frames - 1, -1, -1)]
        )
        rows["rgb_idx"].append(index)
        rows["bev"].append(render_bev(world, index).astype(np.uint8))
        rows["ego_state"].append([state.speed, state.acceleration, state.yaw_rate])
        rows["ego_history"].append(ego_history(world, index))
        rows["target_point"].append(target_point(world, index))
        rows["prompt"].append(navigation_prompt(world.route, world.log[ue_index].progress_s))
        rows["step"].append(index)
        rows["ue_step"].append(ue_index)
        rows["time_s"].append(state.time_s)
        if not labeled:
            continue
        positions, headings, speeds = waypoint_labels(world.log, index, per_wp)
        meta = meta_actions(positions, headings, speeds, state.speed)
        boxes, mask = agent_labels(
            world.log, index, per_wp, config.labels.max_agents, config.labels.agent_range_m
        )
        rows["waypoints"].append(positions)
        rows["route"].append(route_labels(world.log, index, world.route.polyline))
        rows["lateral"].append(meta.lateral)
        rows["longitudinal"].append(meta.longitudinal)
        rows["longitudinal3"].append(meta.longitudinal3)
        rows["agent_boxes"].append(boxes)
        rows["agent_mask"].append(mask)
        rows["ego_size"].append([length, width])
        rows["scene_text"].append(scene_text(world, ue_index))
    n_frames = max(rows["rgb_idx"], default=-1) + 1
    h, w = sensors.camera.height, sensors.camera.width
    n_agents, dims = config.labels.max_agents, config.dims()
    dtypes = {
        "rgb_history_idx": (np.int32, (0, dims["T"])), "rgb_idx": (np.int32, (0,)),
        "bev": (np.uint8, (0, len(spec.BEV_CHANNELS), dims["Hb"], dims["Wb"])),
        "ego_state": (np.float32, (0, spec.EGO_STATE_DIM)), "ego_history": (np.float32, (0, spec.HISTORY_LEN, spec.HISTORY_DIM)),
        "target_point": (np.float32, (0, 2)), "waypoints": (np.float32, (0, spec.NUM_WAYPOINTS, 2)),
        "route": (np.float32, (0, spec.NUM_ROUTE_POINTS, 2)), "lateral": (np.int64, (0, 3)),
        "longitudinal": (np.int64, (0, 3)), "longitudinal3": (np.int64, (0, 3)),
        "agent_boxes": (np.float32, (0, spec.NUM_WAYPOINTS, n_agents, 5)),
        "agent_mask": (bool, (0, spec.NUM_WAYPOINTS, n_agents)), "ego_size": (np.float32, (0, 2)),
        "prompt": (np.str_, (0,)), "scene_text": (np.str_, (0,)), "step": (np.int32, (0,)),
        "ue_step": (np.int32, (0,)), "time_s": (np.float32, (0,)),
    }  # fmt: skip
    arrays = {}
    fields = shard_fields(labeled)
    for name, (dtype, empty) in dtypes.items():
        if name not in fields:
            continue
        arrays[name] = np.asarray(rows[name], dtype=dtype) if rows[name] else np.zeros(empty, dtype=dtype)
    frames = world.frames[:n_frames]
    arrays["frames"] = np.stack(frames).astype(np.uint8) if frames else np.zeros((0, 3, h, w), np.uint8)
    arrays["scenario"] = np.array(world.scenario.name)
    arrays["seed"] = np.array(world.seed, dtype=np.int64)
    arrays["outcome"] = np.array(outcome)
    arrays["route_completion"] = np.array(100.0 * completion, dtype=np.float64)
    return arrays


def run_collect_episode(world, expert, tracker, config: CollectConfig, seed: int) -> tuple[dict, str, float]:
    """Drive one expert episode (plus a 3 s tail after completion) and return its shard arrays."""
    from automot.types import EpisodeInfo

    observation = world.reset(seed)
    expert.reset(EpisodeInfo(scenario=world.scenario.name, seed=seed, env=world))
    tracker.reset()
    outcome, completion, tail = None, 0.0, 0
    tail_steps = config.sim.steps(spec.WAYPOINT_DT_S * spec.NUM_WAYPOINTS)
    while True:
        out = expert.plan(observation)
        command = tracker(out.waypoints, float(world.ego.speed), out.route)
        result = world.step(command.action)
        if outcome is None and result.done:
            outcome, completion = result.outcome, world.progress.completion
            if outcome != "completed":
                break
        elif outcome == "completed" and world.ego.crashed:
            break  # a crash in the tail: the samples whose future reaches it are dropped below
        if outcome == "completed":
            tail += 1
            if tail >= tail_steps:
                break
        observation = world.observe()
    arrays = episode_arrays(world, config, outcome, completion, cut_last=bool(world.ego.crashed))
    return arrays, outcome, completion


_WORKER: dict = {}


def _worker_init(config_json: dict) -> None:
    import torch

    torch.set_num_threads(1)
    _WORKER["config"] = CollectConfig(**config_json)
    _WORKER["worlds"] = {}


def _worker_episode(job: tuple[str, int, str]) -> dict:
    from driving.controller import Tracker
    from driving.expert import ExpertPolicy
    from driving.world import World

    scenario, seed, out_dir = job
    config: CollectConfig = _WORKER["config"]
    worlds = _WORKER["worlds"]
    if scenario not in worlds:
        scenario_obj = build_scenario(scenario, **config.scenario_overrides.get(scenario, {}))
        worlds[scenario] = (
            World(scenario_obj, sim=config.sim, sensors=config.sensors),
            ExpertPolicy(config.expert_config()),
            Tracker(config.sim),
        )
    world, expert, tracker = worlds[scenario]
    arrays, _, _ = run_collect_episode(world, expert, tracker, config, seed)
    name = shard_name(scenario, seed)
    write_shard(Path(out_dir) / name, arrays)
    return name


# ------------------------------------------------------------------------------------------------ the job
def _config_hash(config_json: dict) -> str:
    return hashlib.sha256(json.dumps(config_json, sort_keys=True).encode()).hexdigest()[:16]


def _write_index(out: Path, config_json: dict, entries: dict, plan: list, complete: bool) -> dict:
    episodes = [entries[key] for key in plan if key in entries]
    index = {
        "format_version": FORMAT_VERSION,
        "config": config_json,
        "config_hash": _config_hash(config_json),
        "dims": CollectConfig(**config_json).dims(),
        "episodes": episodes,
        "num_samples": sum(e["samples"] for e in episodes),
        "labeled": bool(config_json.get("labeled", True)),
        "complete": complete,
    }
    write_json_atomic(out / INDEX_NAME, index)
    return index


def _entry(out: Path, rel: str, config: CollectConfig) -> dict:
    """The index entry of a shard, from the shard alone (so a resumed index equals an uninterrupted one)."""
    path = out / rel
    arrays = read_shard(path, expected_dims=config.dims())
    return {
        "file": rel,
        "scenario": str(arrays["scenario"]),
        "seed": int(arrays["seed"]),
        "samples": len(arrays["step"]),
        "frames": len(arrays["frames"]),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "outcome": str(arrays["outcome"]),
        "route_completion": round(float(arrays["route_completion"]), 4),
    }


def _verified_entry(out: Path, rel: str, config: CollectConfig, known: dict | None) -> dict | None:
    """The index entry of an existing shard, or None (and the shard moved aside, named in a warning)
    when it fails the hash the index recorded for it or cannot be read: it is then collected again."""
    path = out / rel
    problem = None
    if known is not None and "sha256" in known:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != known["sha256"]:
            problem = f"fails its hash (index {known['sha256'][:12]}..., file {digest[:12]}...)"
    if problem is None:
        try:
            return _entry(out, rel, config)
        except ValueError as err:
            problem = f"is unreadable ({err})"
    aside = path.with_name(path.name + ".corrupt")
    os.replace(path, aside)
    warnings.warn(f"collect: shard {path} {problem}; kept as {aside.name} and collected again", stacklevel=3)
    return None


def collect(
    config: CollectConfig,
    out_dir: str | Path,
    workers: int = 1,
    progress: bool = True,
    on_episode: Callable[[int], None] | None = None,
) -> dict:
    """Collect, resume, extend or repair the dataset described by `config` in `out_dir`; returns the index.
    `on_episode(done)` is called after each episode with the number of episodes collected so far.

    An existing dataset with the same config resumes; one that `config` extends (more episodes per
    scenario, more scenarios) keeps every shard and collects only the new episodes; a shard that fails
    the hash in the index is named, moved aside (`.corrupt`) and collected again. Any other folder
    content, or a file at `out_dir`, is refused before anything is written.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: expected an int >= 1, got {workers!r}")
    out = Path(out_dir)
    config_json = config.to_json()
    plan = config.episodes_plan()
    known = prepare_out(out, config_json, _config_hash(config_json))
    make_dirs(out / SHARD_DIR, field="out")
    remove_killed_writes(out)
    expected = {shard_name(s, seed): (s, seed) for s, seed in plan}
    entries: dict[tuple[str, int], dict] = {}
    for path in sorted((out / SHARD_DIR).glob("*.npz")):
        rel = f"{SHARD_DIR}/{path.name}"
        if rel not in expected:
            raise ValueError(
                f"out: expected only shards of this collection in {out}, got the unexpected shard {path}"
            )
        entry = _verified_entry(out, rel, config, known.get(rel))
        if entry is not None:
            entries[expected[rel]] = entry
    todo = [key for key in plan if key not in entries]
    _write_index(out, config_json, entries, plan, complete=not todo)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan), initial=len(plan) - len(todo), desc="collect", unit="ep")
    jobs = [(s, seed, str(out)) for s, seed in todo]

    def finished(rel: str) -> None:
        entry = _entry(out, rel, config)
        entries[(entry["scenario"], entry["seed"])] = entry
        _write_index(out, config_json, entries, plan, complete=len(entries) == len(plan))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(samples=sum(e["samples"] for e in entries.values()))
        if on_episode is not None:
            on_episode(len(entries))

    if jobs and workers <= 1:
        _worker_init(config_json)
        for job in jobs:
            finished(_worker_episode(job))
    elif jobs:
        with ProcessPoolExecutor(
            min(workers, len(jobs)),
            mp_context=mp.get_context("spawn"),
            initializer=_worker_init,
            initargs=(config_json,),
        ) as pool:
            for rel in pool.map(_worker_episode, jobs):
                finished(rel)
    if bar is not None:
        bar.close()
    return _write_index(out, config_json, entries, plan, complete=True)
