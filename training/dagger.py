"""DAgger rounds for any trained policy folder (Ross et al. 2011): roll the policy out, label every
state it visits with the privileged expert (`driving.onpolicy`), add the episodes to the dataset as
new shards with their own seeds, fine-tune on everything so far, repeat.

    automot dagger --policy runs/tiny/policy_mlp --data data/tiny/train --val data/tiny/val \\
        --rounds 3 --episodes 4 --steps 400 --out runs/dagger

Round r (1-based) rolls out the policy of round r - 1 (round 0: the given folder) on train-split seeds
`seed_start + (r - 1) * episodes ...` (disjoint from each other; keep them disjoint from the original
data too), writes them to `<out>/data/r{r}` and fine-tunes into `<out>/round{r}/policy` (AE stage,
initialised from the previous round's weights, the head kept). Every piece resumes after kill -9:
collection shard by shard, training from its last Lightning checkpoint, finished rounds are skipped.
The study pipeline (`studies.tasks`) runs the same two pieces as tasks per training seed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


def load_planner(directory: str, refresh_every: int = 2, sampling_seed: int = 0):
    """A closed-loop `FastSlowPlanner` over the policy folder `directory` (a picklable learner factory
    via `functools.partial`)."""
    from mot.runtime import FastSlowPlanner
    from training.policy import load_pretrained

    return FastSlowPlanner(load_pretrained(directory), refresh_every=refresh_every, seed=sampling_seed)


def policy_id(directory: str | Path) -> str:
    """Names a policy folder by its weights (so a dataset records exactly which policy drove)."""
    from mot.checkpoint import WEIGHTS

    digest = hashlib.sha256((Path(directory) / WEIGHTS).read_bytes()).hexdigest()[:16]
    return f"{Path(directory).name}@{digest}"


def collect_round(
    policy_dir: str | Path,
    out_dir: str | Path,
    collect,
    *,
    beta: float = 0.0,
    noise=None,
    round_index: int = 1,
    refresh_every: int = 2,
    sampling_seed: int = 0,
    workers: int = 1,
) -> dict:
    """Roll out `policy_dir` on the episodes of `collect` (a `driving.collect.CollectConfig`) with the
    expert labelling; returns the dataset index of `out_dir`."""
    from driving.onpolicy import ControlNoise, OnPolicyConfig, collect_on_policy

    config = OnPolicyConfig(
        collect=collect,
        beta=beta,
        noise=noise if noise is not None else ControlNoise(),
        policy_id=policy_id(policy_dir),
        seed_salt=round_index,
    )
    factory = functools.partial(load_planner, str(policy_dir), refresh_every, sampling_seed)
    return collect_on_policy(config, out_dir, factory, workers=workers)


@dataclass
class DaggerConfig:
    rounds: int = 3
    episodes: int = 4  # per scenario and round
    scenarios: list[str] = field(default_factory=lambda: ["highway", "merge", "roundabout", "intersection"])
    seed_start: int = 10_000  # train-split offset of round 1's seeds
    beta: float = 0.0
    beta_decay: float = 0.5
    acceleration_std: float = 0.0  # DART noise on the rollouts
    lateral_accel_std: float = 0.0
    steps: int = 400
    lr: float = 1e-3
    warmup_steps: int = 20
    batch_size: int = 32
    seed: int = 0
    image_size: int = 64
    duration_s: float | None = None
    workers: int = 1

    def __post_init__(self) -> None:
        from automot.checks import check_positive

        for name in ("rounds", "episodes", "steps", "lr", "batch_size", "image_size", "workers"):
            check_positive(f"DaggerConfig.{name}", getattr(self, name))
        for name in ("beta", "beta_decay"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(
                    f"DaggerConfig.{name}: expected a value in [0, 1], got {getattr(self, name)}"
                )


def run_dagger(
    config: DaggerConfig, policy: str | Path, train_dirs: list, val_dirs: list | None, out: str | Path
) -> list[dict]:
    """All rounds (finished ones skipped); returns one record per round (also in `<out>/rounds.json`)."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from automot.io import write_json_atomic
    from driving.collect import CollectConfig
    from driving.config import BEVConfig, CameraConfig, SensorConfig
    from driving.datamodule import DrivingDataModule
    from driving.onpolicy import ControlNoise
    from mot.checkpoint import saved_sensor_options
    from training.optim import OptimConfig
    from training.policy import BackboneSpec
    from training.stages import ActionExpertStage

    out = Path(out)
    records_path = out / "rounds.json"
    records = json.loads(records_path.read_text())["rounds"] if records_path.exists() else []
    # The rollouts' world shows what the policy was trained to see (the BEV's blinkers, trails).
    sensors = SensorConfig(
        camera=CameraConfig(height=config.image_size, width=config.image_size),
        bev=BEVConfig.from_options(saved_sensor_options(policy)),
    )
    overrides = (
        {} if config.duration_s is None else {s: {"duration_s": config.duration_s} for s in config.scenarios}
    )
    previous, data = Path(policy), [str(d) for d in train_dirs]
    for r in range(1, config.rounds + 1):
        data_dir, export = out / "data" / f"r{r}", out / f"round{r}" / "policy"
        data.append(str(data_dir))
        if r <= len(records) and (export / "mot_config.json").exists():
            previous = export
            continue
        start = time.perf_counter()
        collect = CollectConfig(
            scenarios=list(config.scenarios),
            episodes=config.episodes,
            split="train",
            seed_start=config.seed_start + (r - 1) * config.episodes,
            scenario_overrides=overrides,
            sensors=sensors,
        )
        noise = ControlNoise(
            acceleration_std=config.acceleration_std, lateral_accel_std=config.lateral_accel_std
        )
        index = collect_round(
            previous, data_dir, collect, beta=config.beta * config.beta_decay ** (r - 1), noise=noise,
            round_index=r, workers=config.workers,
        )  # fmt: skip
        collected = time.perf_counter()
        L.seed_everything(config.seed, workers=True, verbose=False)
        stage = ActionExpertStage(
            backbone=BackboneSpec(init_from=str(previous), seed=config.seed),
            optim=OptimConfig(lr=config.lr, warmup_steps=config.warmup_steps),
            export_dir=str(export),
        )
        ckpt = out / f"round{r}" / "ckpt"
        trainer = L.Trainer(
            accelerator="cpu", max_steps=config.steps, limit_val_batches=0, deterministic=True, logger=False,
            callbacks=[ModelCheckpoint(dirpath=str(ckpt), every_n_train_steps=max(1, config.steps // 4), save_last=True, save_top_k=0)],
            enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        last = ckpt / "last.ckpt"
        trainer.fit(
            stage,
            datamodule=DrivingDataModule(data, val_dirs, batch_size=config.batch_size, seed=config.seed),
            ckpt_path=str(last) if last.exists() else None,
            weights_only=True,
        )
        records = [*records[: r - 1], _round_record(r, index, start, collected, time.perf_counter())]
        write_json_atomic(records_path, {"config": asdict(config), "rounds": records})
        previous = export
    return records


def _round_record(r: int, index: dict, start: float, collected: float, end: float) -> dict:
    """Per round: samples added, the rollouts' outcomes (the mixture policy on train seeds), wall times."""
    from collections import Counter

    episodes = index["episodes"]
    return {
        "round": r,
        "episodes": len(episodes),
        "samples": index["num_samples"],
        "rollout_outcomes": dict(sorted(Counter(e["outcome"] for e in episodes).items())),
        "rollout_route_completion": round(
            sum(e["route_completion"] for e in episodes) / max(len(episodes), 1), 2
        ),
        "collect_s": round(collected - start, 1),
        "train_s": round(end - collected, 1),
    }


# -- `automot dagger` (imports nothing heavy until it runs: `automot --help` stays fast) --------------------------------------------------------------------------------------


def register_cli(subparsers) -> None:
    d = DaggerConfig()
    p = subparsers.add_parser(
        "dagger",
        help="DAgger rounds on a trained policy folder: roll out, expert-label, fine-tune (resumable)",
    )
    p.add_argument("--policy", required=True, help="policy folder to start from (round 0)")
    p.add_argument("--data", nargs="+", required=True, help="the training dataset directories so far")
    p.add_argument("--val", nargs="*", default=None, help="validation dataset directories (optional)")
    p.add_argument("--out", required=True, help="output folder: data/r*, round*/policy, rounds.json")
    p.add_argument("--rounds", type=int, default=d.rounds)
    p.add_argument("--episodes", type=int, default=d.episodes, help="rollouts per scenario and round")
    p.add_argument("--scenarios", nargs="+", default=d.scenarios)
    p.add_argument(
        "--seed-start", type=int, default=d.seed_start, help="train-split offset of round 1's seeds"
    )
    p.add_argument("--beta", type=float, default=d.beta, help="per-step probability of the expert's command")
    p.add_argument("--beta-decay", type=float, default=d.beta_decay)
    p.add_argument("--acceleration-std", type=float, default=0.0, help="DART noise on the rollouts [m/s^2]")
    p.add_argument("--lateral-accel-std", type=float, default=0.0, help="DART noise on the rollouts [m/s^2]")
    p.add_argument("--steps", type=int, default=d.steps, help="fine-tuning steps per round")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--duration", type=float, default=None, help="episode time limit [s] for every scenario")
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    config = DaggerConfig(
        rounds=args.rounds, episodes=args.episodes, scenarios=args.scenarios, seed_start=args.seed_start,
        beta=args.beta, beta_decay=args.beta_decay, acceleration_std=args.acceleration_std,
        lateral_accel_std=args.lateral_accel_std, steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
        image_size=args.image_size, duration_s=args.duration, workers=args.workers,
    )  # fmt: skip
    if not (Path(args.policy) / "mot_config.json").exists():
        raise ValueError(f"--policy: expected a policy folder with mot_config.json, got {args.policy}")
    records = run_dagger(config, args.policy, args.data, args.val or None, args.out)
    if args.json:
        print(
            json.dumps(
                {"rounds": records, "policy": str(Path(args.out) / f"round{config.rounds}" / "policy")}
            )
        )
    else:
        for r in records:
            print(
                f"round {r['round']}: {r['episodes']} rollouts {r['rollout_outcomes']}, RC {r['rollout_route_completion']}%, "
                f"+{r['samples']} samples, collect {r['collect_s']} s, train {r['train_s']} s"
            )
    return 0
