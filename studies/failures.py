"""Failure analysis of a study: how episodes end, how fast each head drives against the expert, and a
picture of the worst episode per head and scenario.

- `outcome_table(runs)`: per head (and baseline) and scenario, the episode outcomes summed over its runs
  (completed / collision / off-road / timeout; they add up to the episodes run) and the mean ego speed.
- `worst_episodes(study, runs)`: per head and scenario, the lowest-scoring episode over all its runs
  (ties: the first run id, then the lowest seed).
- `draw_worst_episode(...)`: drives that episode again (every run is deterministic given its policy,
  sampling seed and episode seed), recording each step's plan and the expert's plan at the same state,
  and saves a PNG strip of BEV snapshots: `failures/<head>-<scenario>.png`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from automot.io import read_jsonl

OUTCOMES = ("completed", "collision", "offroad", "timeout")
FAILURES_DIR = "failures"


def outcome_table(runs: list[dict]) -> dict[str, dict[str, dict]]:
    """{head: {scenario: {"episodes", outcome counts..., "mean_speed"}}} summed over the head's runs."""
    table: dict[str, dict[str, dict]] = {}
    for run in sorted(runs, key=lambda r: r["run_id"]):
        for scenario, block in run["closed_loop"]["per_scenario"].items():
            cell = table.setdefault(run["head"], {}).setdefault(
                scenario, {"episodes": 0, **{k: 0 for k in OUTCOMES}, "_speeds": []}
            )
            cell["episodes"] += block["episodes"]
            for k in OUTCOMES:
                cell[k] += block.get("outcomes", {}).get(k, 0)
            if block.get("mean_speed") is not None:
                cell["_speeds"].append((block["mean_speed"], block["episodes"]))
    for per_scenario in table.values():
        for cell in per_scenario.values():
            speeds = cell.pop("_speeds")
            total = sum(n for _, n in speeds)
            cell["mean_speed"] = sum(v * n for v, n in speeds) / total if total else None
    return table


def worst_episodes(study: Path, runs: list[dict]) -> dict[tuple[str, str], dict]:
    """{(head, scenario): {"run_id", "training_seed", "sampling_seed", "seed", "score", "outcome"}}."""
    from studies.tasks import RUNS_DIR

    worst: dict[tuple[str, str], dict] = {}
    for run in sorted(runs, key=lambda r: r["run_id"]):
        episodes = read_jsonl(study / RUNS_DIR / f"{run['run_id']}.episodes.jsonl")
        for e in sorted(episodes, key=lambda e: (e["scenario"], e["seed"])):
            key = (run["head"], e["scenario"])
            if key not in worst or e["score"] < worst[key]["score"]:
                worst[key] = {
                    "run_id": run["run_id"],
                    "kind": run["kind"],
                    "training_seed": run["training_seed"],
                    "sampling_seed": run["sampling_seed"],
                    "seed": e["seed"],
                    "score": e["score"],
                    "outcome": e["outcome"],
                }
    return worst


class _Recorder:
    """Wraps a policy: remembers each step's plan (ego frame) and the expert's plan at the same state."""

    def __init__(self, policy, expert_config=None) -> None:
        from driving.expert import ExpertPolicy

        self.policy, self.expert = policy, ExpertPolicy(expert_config)
        self.name = getattr(policy, "name", type(policy).__name__)
        self.plans: list[tuple[np.ndarray, np.ndarray]] = []

    def reset(self, episode) -> None:
        self.policy.reset(episode)
        self.expert.reset(episode)
        self.plans = []

    def plan(self, observation):
        out = self.policy.plan(observation)
        expert = self.expert.plan(observation)
        self.plans.append((np.asarray(out.waypoints), np.asarray(expert.waypoints)))
        return out


def draw_worst_episode(study: Path, config, head: str, scenario: str, worst: dict, panels: int = 6) -> Path:
    """Drive the episode again and save its strip; returns the PNG path."""
    from driving.closed_loop import run_episode
    from driving.controller import Tracker
    from driving.world import World
    from studies.tasks import policy_dir, scenario_overrides, study_sensors

    if worst["kind"] == "baseline":
        from driving.baselines import build_policy

        policy = build_policy(head, config.expert_config())
    else:
        from mot.runtime import FastSlowPlanner
        from training.policy import load_pretrained

        backbone = load_pretrained(policy_dir(study, worst["training_seed"], head))
        policy = FastSlowPlanner(
            backbone, refresh_every=config.eval.refresh_every, seed=worst["sampling_seed"]
        )
    from driving.scenarios import build_scenario

    recorder = _Recorder(policy, config.expert_config())
    world = World(
        build_scenario(scenario, **scenario_overrides(config).get(scenario, {})),
        sensors=study_sensors(config),
    )
    try:
        record = run_episode(recorder, world, int(worst["seed"]), Tracker(world.sim))
        path = study / FAILURES_DIR / f"{head}-{scenario}.png"
        _strip(world, recorder.plans, record, worst, path, panels)
    finally:
        world.close()
    return path


def _strip(world, plans, record, worst: dict, path: Path, panels: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from automot.io import atomic_path
    from driving.sensors.observation import render_bev
    from driving.viz import bev_to_rgb

    bev = world.bev.config
    last = len(plans) - 1
    steps = sorted({round(x) for x in np.linspace(0, last, panels)})
    fig, axes = plt.subplots(1, len(steps), figsize=(2.6 * len(steps), 3.6))
    for ax, step in zip(np.atleast_1d(axes), steps):
        state = world.log[step]
        extent = (-bev.side_m, bev.side_m, -bev.behind_m, bev.ahead_m)
        ax.imshow(bev_to_rgb(render_bev(world, step)), extent=extent)
        mine, expert = plans[step]
        ax.plot(-expert[:, 1], expert[:, 0], "o-", color="white", ms=3, lw=1.2, label="expert")
        ax.plot(-mine[:, 1], mine[:, 0], "x--", color="magenta", ms=4, lw=1.2, label="policy")
        ax.set_title(f"t={state.time_s:.1f}s v={state.speed:.1f}m/s", fontsize=8)
        ax.set_xlim(-20, 20)
        ax.set_ylim(-bev.behind_m, bev.ahead_m)
        ax.set_xticks([])
        ax.set_yticks([])
    np.atleast_1d(axes)[0].legend(fontsize=6, loc="lower right")
    fig.suptitle(
        f"{worst['run_id']} on {record.scenario} seed {record.seed}: {record.outcome}, score {record.score:.1f} "
        f"(recorded {worst['score']:.1f}), RC {record.route_completion:.0f}%",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
