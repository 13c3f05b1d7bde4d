"""Demonstrations where someone else drives and the privileged expert labels every visited state:
on-policy aggregation (DAgger, Ross et al. 2011) and perturbed expert demonstrations (DART, Laskey
et al. 2017).

Every policy step the rule-based expert plans from the current simulator state, whoever is driving,
and that plan is the step's label: waypoints (6, 2), route (20, 2), and the meta-actions cut from the
plan's own speeds and headings at the waypoint times. What is executed is the *actor's* command:

- the learner's plan, tracked (DAgger); with probability `beta` per step the expert's own command
  instead (the mixture policy beta * expert + (1 - beta) * learner of DAgger's round i);
- with `noise` on, temporally correlated noise (an AR(1) process with time constant `correlation_s`)
  added to the executed longitudinal and lateral acceleration (DART; the lateral part becomes a steering
  angle at the current speed, so it perturbs the path as much at 25 m/s as at 9 m/s): the data shows
  recoveries from states the expert would not reach on its own, while the labels stay the expert's
  intended, noiseless plan.

Without a learner (`beta` = 1) this is expert collection with plan labels, perturbed or not.

The actor's randomness (the per-step mixing draw, the noise) comes from a generator seeded by
(episode seed, `seed_salt`), two draws per step whatever is used, and the learner is asked every step
whatever is executed, so an episode depends only on its seed, the config and the learner.

Samples: every `sample_every` steps from the start to the end of the episode (the crash step has no
label and is not a sample); a completed episode is driven 3 s past the destination by the clean expert
so that future agent boxes exist, and its samples stop at the destination. After an early end, future
agent boxes past the log are masked out.

Datasets have the layout of `driving.collect` (index.json + shards/<scenario>-<seed>.npz, readable by
`DrivingDataset`) and the same guarantees: byte-deterministic shards, the same dataset for any number of
workers, resumable after kill -9 (a rerun verifies finished shards and runs only the missing episodes),
and a refusal to extend a directory written with another config.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from automot import spec
from automot.checks import check_positive
from automot.io import write_json_atomic
from driving.collect import INDEX_NAME, SHARD_DIR, CollectConfig, _config_hash, _entry, shard_name
from driving.collect_folder import remove_killed_writes
from driving.scenarios import build_scenario
from driving.shards import FORMAT_VERSION, SCHEMA, write_shard

# A learner factory builds the policy to roll out (in each worker process); it must be picklable.
LearnerFactory = Callable[[], object]


@dataclass
class ControlNoise:
    """DART perturbation of the executed controls (stationary standard deviations, physical units)."""

    acceleration_std: float = 0.0  # m/s^2, longitudinal
    lateral_accel_std: float = 0.0  # m/s^2, turned into steering at the current speed
    correlation_s: float = 1.0  # time constant of the AR(1) process
    episode_fraction: float = 1.0  # share of episodes perturbed (drawn per episode); the rest are clean

    def __post_init__(self) -> None:
        check_positive("ControlNoise.acceleration_std", self.acceleration_std, allow_zero=True)
        check_positive("ControlNoise.lateral_accel_std", self.lateral_accel_std, allow_zero=True)
        check_positive("ControlNoise.correlation_s", self.correlation_s)
        if not 0.0 <= self.episode_fraction <= 1.0:
            raise ValueError(
                f"ControlNoise.episode_fraction: expected a value in [0, 1], got {self.episode_fraction}"
            )

    @property
    def active(self) -> bool:
        return self.episode_fraction > 0 and (self.acceleration_std > 0 or self.lateral_accel_std > 0)


@dataclass
class OnPolicyConfig:
    """What to roll out and how; `collect` says where (scenarios, split, seeds, sensors, sampling)."""

    collect: CollectConfig = field(default_factory=CollectConfig)
    beta: float = 1.0  # per-step probability of executing the expert's command (1: no learner needed)
    noise: ControlNoise = field(default_factory=ControlNoise)
    policy_id: str = ""  # names the learner (e.g. its folder and weight hash); part of the config hash
    seed_salt: int = 0  # separates the actor's random stream (e.g. the DAgger round)

    def __post_init__(self) -> None:
        if isinstance(self.collect, dict):
            self.collect = CollectConfig(**self.collect)
        if isinstance(self.noise, dict):
            self.noise = ControlNoise(**self.noise)
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"OnPolicyConfig.beta: expected a value in [0, 1], got {self.beta}")
        if self.collect.async_fraction:
            raise ValueError(
                "OnPolicyConfig.collect.async_fraction: expected 0 (on-policy samples are synchronous), "
                f"got {self.collect.async_fraction}"
            )
        if self.beta < 1.0 and not self.policy_id:
            raise ValueError(
                f"OnPolicyConfig.policy_id: expected a name for the learner when beta < 1 (got beta={self.beta}), got ''"
            )

    @property
    def needs_learner(self) -> bool:
        return self.beta < 1.0

    def to_json(self) -> dict:
        out = json.loads(json.dumps(asdict(self)))
        out["collect"] = self.collect.to_json()  # without a default expert, as `CollectConfig.to_json`
        return out


# --------------------------------------------------------------------------------------------- one episode
@dataclass
class StepLabel:
    """The expert's plan at one logged step (ego frame at that step)."""

    waypoints: np.ndarray  # (6, 2)
    route: np.ndarray  # (20, 2)
    speeds: np.ndarray  # (6,) planned speed at the waypoint times
    headings: np.ndarray  # (6,) planned heading at the waypoint times, relative to the ego's


@dataclass
class EpisodeTrace:
    """What happened in one labelled episode, for inspection and tests."""

    actions: list[np.ndarray]  # (2,) executed per step
    expert_steps: list[bool]  # the expert's command was the base of the executed one
    labels: list[StepLabel]  # per step
    outcome: str
    completion: float
    last_sample: int  # index of the last logged step that is a sample


def _expert_label(out) -> StepLabel:
    return StepLabel(
        waypoints=np.asarray(out.waypoints, np.float64),
        route=np.asarray(out.route, np.float64),
        speeds=np.asarray(out.info["waypoint_speeds"], np.float64),
        headings=np.asarray(out.info["waypoint_headings"], np.float64),
    )


# highway-env's bicycle turns about its centre: lateral acceleration ~ v^2 * steering / length (small angles).
_LENGTH_M = 5.0
_MIN_SPEED = 3.0  # below this the lateral noise is that of 3 m/s (no huge angles when standing)


def _perturb(action: np.ndarray, noise: np.ndarray, speed: float, sim) -> np.ndarray:
    """Add (longitudinal, lateral) acceleration noise [m/s^2] to a normalised [acc, steer] action
    (highway-env's scale; its steering sign is the mirror of the display frame's)."""
    lo, hi = sim.acceleration_range
    steering = math.atan(noise[1] * _LENGTH_M / max(speed, _MIN_SPEED) ** 2)
    out = action + np.array([2.0 * noise[0] / (hi - lo), -steering / sim.steering_range_rad])
    return np.clip(out, -1.0, 1.0)


def run_labelled_episode(
    world, expert, expert_tracker, config: OnPolicyConfig, seed: int, learner=None, learner_tracker=None
) -> EpisodeTrace:
    """Drive one episode with the actor of `config`, the expert labelling every step; the world keeps the log."""
    from automot.types import EpisodeInfo

    if config.needs_learner and learner is None:
        raise ValueError(f"run_labelled_episode: expected a learner policy for beta={config.beta}, got None")
    sim = config.collect.sim
    observation = world.reset(seed)
    info = EpisodeInfo(scenario=world.scenario.name, seed=seed, env=world)
    expert.reset(info)
    expert_tracker.reset()
    if learner is not None:
        learner.reset(info)
        learner_tracker.reset()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7919, int(config.seed_salt)]))
    noise_cfg = config.noise
    perturbed = noise_cfg.active and rng.random() < noise_cfg.episode_fraction
    std = np.array([noise_cfg.acceleration_std, noise_cfg.lateral_accel_std])
    rho = math.exp(-sim.dt / noise_cfg.correlation_s)
    noise = np.zeros(2)
    trace = EpisodeTrace([], [], [], "", 0.0, 0)
    tail_steps = sim.steps(spec.WAYPOINT_DT_S * spec.NUM_WAYPOINTS)
    outcome, tail = None, 0
    while True:
        out = expert.plan(observation)
        trace.labels.append(_expert_label(out))
        speed = float(world.ego.speed)
        action = expert_tracker(out.waypoints, speed, out.route).action
        u, eps = rng.random(), rng.standard_normal(2)  # drawn every step: the stream does not depend on use
        noise = rho * noise + math.sqrt(1.0 - rho * rho) * std * eps
        from_expert = True
        if learner is not None:
            mine = learner.plan(observation)
            learner_action = learner_tracker(mine.waypoints, speed, mine.route).action
            if outcome is None and u >= config.beta:
                action, from_expert = learner_action, False
        if perturbed and outcome is None:
            action = _perturb(action, noise, speed, sim)
        trace.actions.append(np.asarray(action, np.float64))
        trace.expert_steps.append(from_expert)
        result = world.step(action)
        if outcome is None and result.done:
            outcome, trace.completion = result.outcome, world.progress.completion
            # The destination step (completed) or the last step with a label (collision, off-road, timeout).
            trace.last_sample = world.step_index - 1
            if outcome != "completed":
                break
        elif outcome == "completed" and world.ego.crashed:
            break
        if outcome == "completed":
            tail += 1
            if tail >= tail_steps:
                break
        observation = world.observe()
    trace.outcome = outcome
    return trace


def labelled_arrays(world, config: OnPolicyConfig, trace: EpisodeTrace) -> dict[str, np.ndarray]:
    """Shard arrays (the `driving.shards` schema) of a finished labelled episode."""
    from driving.labels import agent_labels, meta_actions
    from driving.language import navigation_prompt, scene_text
    from driving.sensors.observation import ego_history, render_bev, target_point

    c = config.collect
    per_wp = c.sim.steps(spec.WAYPOINT_DT_S)
    length, width = world.ego_size
    rows: dict[str, list] = {name: [] for name in SCHEMA if name not in _EPISODE_FIELDS}
    interval = c.sim.steps(c.sensors.frame_interval_s)
    for index in range(0, trace.last_sample + 1, c.sample_every):
        state, label = world.log[index], trace.labels[index]
        meta = meta_actions(label.waypoints, label.headings, label.speeds, state.speed)
        boxes, mask = agent_labels(world.log, index, per_wp, c.labels.max_agents, c.labels.agent_range_m)
        rows["rgb_history_idx"].append(
            [max(index - k * interval, 0) for k in range(c.sensors.history_frames - 1, -1, -1)]
        )
        rows["rgb_idx"].append(index)
        rows["bev"].append(render_bev(world, index).astype(np.uint8))
        rows["ego_state"].append([state.speed, state.acceleration, state.yaw_rate])
        rows["ego_history"].append(ego_history(world, index))
        rows["target_point"].append(target_point(world, index))
        rows["waypoints"].append(label.waypoints)
        rows["route"].append(label.route)
        rows["lateral"].append(meta.lateral)
        rows["longitudinal"].append(meta.longitudinal)
        rows["longitudinal3"].append(meta.longitudinal3)
        rows["agent_boxes"].append(boxes)
        rows["agent_mask"].append(mask)
        rows["ego_size"].append([length, width])
        rows["prompt"].append(navigation_prompt(world.route, state.progress_s))
        rows["scene_text"].append(scene_text(world, index))
        rows["step"].append(index)
        rows["ue_step"].append(index)
        rows["time_s"].append(state.time_s)
    dims = {**c.dims(), "N": 0}
    arrays = {name: _as_array(name, values, dims) for name, values in rows.items()}
    n_frames = trace.last_sample + 1 if arrays["rgb_idx"].size else 0
    frames = world.frames[:n_frames]
    h, w = c.sensors.camera.height, c.sensors.camera.width
    arrays["frames"] = np.stack(frames).astype(np.uint8) if frames else np.zeros((0, 3, h, w), np.uint8)
    arrays["scenario"] = np.array(world.scenario.name)
    arrays["seed"] = np.array(world.seed, dtype=np.int64)
    arrays["outcome"] = np.array(trace.outcome)
    arrays["route_completion"] = np.array(100.0 * trace.completion, dtype=np.float64)
    return arrays


_EPISODE_FIELDS = ("frames", "scenario", "seed", "outcome", "route_completion")
_DTYPES = {"str": np.str_, "bool": bool}


def _as_array(name: str, values: list, dims: dict[str, int]) -> np.ndarray:
    kind, shape = SCHEMA[name]
    dtype = _DTYPES.get(kind, kind)
    if values:
        return np.asarray(values, dtype=dtype)
    return np.zeros(tuple(dims[s] if isinstance(s, str) else s for s in shape), dtype=dtype)


# ------------------------------------------------------------------------------------------------ the job
_WORKER: dict = {}


def _worker_init(config_json: dict, learner_factory: LearnerFactory | None) -> None:
    import torch

    torch.set_num_threads(1)  # the learner's numbers must not depend on the worker's thread count
    _WORKER.clear()  # an in-process caller may run several collections (DAgger rounds) in a row
    _WORKER["config"] = OnPolicyConfig(**config_json)
    _WORKER["factory"] = learner_factory
    _WORKER["actors"] = {}


def _worker_episode(job: tuple[str, int, str]) -> str:
    from driving.controller import Tracker
    from driving.expert import ExpertPolicy
    from driving.world import World

    scenario, seed, out_dir = job
    config: OnPolicyConfig = _WORKER["config"]
    c = config.collect
    actors = _WORKER["actors"]
    if scenario not in actors:
        world = World(build_scenario(scenario, **c.scenario_overrides.get(scenario, {})), c.sim, c.sensors)
        if config.needs_learner and "learner" not in _WORKER:
            _WORKER["learner"] = _WORKER["factory"]()
        actors[scenario] = (world, ExpertPolicy(c.expert_config()), Tracker(c.sim), Tracker(c.sim))
    world, expert, expert_tracker, learner_tracker = actors[scenario]
    learner = _WORKER.get("learner") if config.needs_learner else None
    trace = run_labelled_episode(world, expert, expert_tracker, config, seed, learner, learner_tracker)
    name = shard_name(scenario, seed)
    write_shard(Path(out_dir) / name, labelled_arrays(world, config, trace))
    return name


def _write_index(out: Path, config: OnPolicyConfig, entries: dict, plan: list, complete: bool) -> dict:
    config_json = config.to_json()
    episodes = [entries[key] for key in plan if key in entries]
    index = {
        "format_version": FORMAT_VERSION,
        "kind": "on_policy",
        "config": config_json,
        "config_hash": _config_hash(config_json),
        "dims": config.collect.dims(),
        "episodes": episodes,
        "num_samples": sum(e["samples"] for e in episodes),
        "complete": complete,
    }
    write_json_atomic(out / INDEX_NAME, index)
    return index


def collect_on_policy(
    config: OnPolicyConfig,
    out_dir: str | Path,
    learner_factory: LearnerFactory | None = None,
    workers: int = 1,
    progress: bool = False,
) -> dict:
    """Collect (or resume collecting) the labelled episodes of `config` into `out_dir`; returns the index.

    `learner_factory()` builds the policy to roll out (once per worker process); required when beta < 1.
    """
    if config.needs_learner and learner_factory is None:
        raise ValueError(
            f"collect_on_policy: expected a learner_factory for beta={config.beta} < 1, got None"
        )
    out = Path(out_dir)
    config_json = config.to_json()
    plan = config.collect.episodes_plan()
    index_path = out / INDEX_NAME
    if index_path.exists():
        try:
            previous = json.loads(index_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{index_path}: expected a JSON dataset index, got unreadable JSON ({err})"
            ) from err
        if previous.get("config_hash") != _config_hash(config_json):
            raise ValueError(
                f"{out}: expected a dataset collected with this config (hash {_config_hash(config_json)}), got one "
                f"with hash {previous.get('config_hash')}; use another directory"
            )
    (out / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    remove_killed_writes(out)
    expected = {shard_name(s, seed): (s, seed) for s, seed in plan}
    entries: dict[tuple[str, int], dict] = {}
    for path in sorted((out / SHARD_DIR).glob("*.npz")):
        rel = f"{SHARD_DIR}/{path.name}"
        if rel not in expected:
            raise ValueError(
                f"{path}: expected only shards of this collection in {out}, got an unexpected shard"
            )
        entries[expected[rel]] = _entry(out, rel, config.collect)
    todo = [key for key in plan if key not in entries]
    _write_index(out, config, entries, plan, complete=not todo)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan), initial=len(plan) - len(todo), desc="on-policy", unit="ep")

    def finished(rel: str) -> None:
        entry = _entry(out, rel, config.collect)
        entries[(entry["scenario"], entry["seed"])] = entry
        _write_index(out, config, entries, plan, complete=len(entries) == len(plan))
        if bar is not None:
            bar.update(1)

    jobs = [(s, seed, str(out)) for s, seed in todo]
    factory = learner_factory if config.needs_learner else None
    if jobs and workers <= 1:
        _worker_init(config_json, factory)
        for job in jobs:
            finished(_worker_episode(job))
    elif jobs:
        with ProcessPoolExecutor(
            min(workers, len(jobs)),
            mp_context=mp.get_context("spawn"),
            initializer=_worker_init,
            initargs=(config_json, factory),
        ) as pool:
            for rel in pool.map(_worker_episode, jobs):
                finished(rel)
    if bar is not None:
        bar.close()
    return _write_index(out, config, entries, plan, complete=True)
