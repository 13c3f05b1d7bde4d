"""The tasks of a study and how each one runs. Every task writes its output atomically under the
study folder and is skipped when that output exists, so a study resumes after any interruption.

    collect:{split}                 data/{split}/         expert demonstrations (train, val, test)
    ue                              ue/                   UE scene pretraining (frozen afterwards)
    ae:{seed}                       seeds/{seed}/policy_mlp/          AE + MLP head
    refine:{seed}:{head}            seeds/{seed}/policy_{head}/       refiner around that AE
    eval:{head}:{seed}:{sampling}   runs/{run_id}.json    open + closed loop of one head/seed pair
    baseline:{name}                 runs/{run_id}.json    expert / constant velocity, closed loop

A task's result depends only on the config and its own seeds: training seeds the RNG, runs single-
threaded and deterministic, and resumes from its last Lightning checkpoint, so a resumed study ends
with exactly the numbers of an uninterrupted one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from automot.io import read_jsonl, write_json_atomic
from studies.config import StudyConfig

RUNS_DIR = "runs"


@dataclass(frozen=True)
class Task:
    id: str
    kind: str
    params: dict = field(default_factory=dict, compare=False, hash=False)
    deps: tuple[str, ...] = ()


def run_id(head: str, training_seed: int | None, sampling_seed: int | None) -> str:
    if training_seed is None:
        return f"{head}"
    return f"{head}__t{training_seed}__s{sampling_seed}"


def plan_tasks(config: StudyConfig) -> list[Task]:
    """Every task of the study, in an order that respects dependencies."""
    tasks = [Task(f"collect:{split}", "collect", {"split": split}) for split in ("train", "val", "test")]
    ue_deps = ("collect:train", "collect:val")
    if config.pretrain_ue_steps > 0:
        tasks.append(Task("ue", "ue", {}, ue_deps))
    ae_deps = ("ue",) if config.pretrain_ue_steps > 0 else ue_deps
    for seed in config.training_seeds:
        tasks.append(Task(f"ae:{seed}", "ae", {"seed": seed}, ae_deps))
        for head in config.heads:
            if head.key != "mlp":
                tasks.append(
                    Task(
                        f"refine:{seed}:{head.key}",
                        "refine",
                        {"seed": seed, "head": head.key},
                        (f"ae:{seed}",),
                    )
                )
    for head in config.heads:
        for seed in config.training_seeds:
            policy_task = f"ae:{seed}" if head.key == "mlp" else f"refine:{seed}:{head.key}"
            for sampling in config.sampling_seeds:
                rid = run_id(head.key, seed, sampling)
                params = {"head": head.key, "seed": seed, "sampling_seed": sampling, "run_id": rid}
                tasks.append(
                    Task(f"eval:{head.key}:{seed}:{sampling}", "eval", params, (policy_task, "collect:test"))
                )
    for name in config.baselines:
        tasks.append(
            Task(
                f"baseline:{name}",
                "baseline",
                {"name": name, "run_id": run_id(name, None, None)},
                ("collect:test",),
            )
        )
    return tasks


# -- where outputs live ------------------------------------------------------------------------------


def data_dir(study: Path, split: str) -> Path:
    return study / "data" / split


def policy_dir(study: Path, seed: int, head: str) -> Path:
    return study / "seeds" / str(seed) / f"policy_{head}"


def run_path(study: Path, rid: str) -> Path:
    return study / RUNS_DIR / f"{rid}.json"


def is_done(study: Path, task: Task) -> bool:
    p = task.params
    if task.kind == "collect":
        index = data_dir(study, p["split"]) / "index.json"
        return index.exists() and '"complete": true' in index.read_text()
    if task.kind == "ue":
        return (study / "ue" / "config.json").exists()
    if task.kind == "ae":
        return (policy_dir(study, p["seed"], "mlp") / "mot_config.json").exists()
    if task.kind == "refine":
        return (policy_dir(study, p["seed"], p["head"]) / "mot_config.json").exists()
    return run_path(study, p["run_id"]).exists()


# -- running one task -------------------------------------------------------------------------------


def run_task(
    study: str | Path, config_dict: dict, task_id: str, threads: int = 1, imports: list[str] | tuple = ()
) -> str:
    """Run one task (in whatever process the executor chose). Returns the task id.

    `imports`: plug-in modules (e.g. the module registering a custom head) to import first; a
    spawned worker starts with none of the orchestrator's imports.
    """
    import torch

    from automot.plugins import import_modules
    from automot.quiet import quiet_lightning
    from studies.config import build_config

    torch.set_num_threads(threads)
    quiet_lightning()
    import_modules(imports, field="study plug-in")
    study = Path(study)
    config = build_config(StudyConfig, config_dict)
    task = {t.id: t for t in plan_tasks(config)}[task_id]
    if is_done(study, task):
        return task_id
    runner = {
        "collect": _collect,
        "ue": _ue,
        "ae": _ae,
        "refine": _refine,
        "eval": _eval,
        "baseline": _baseline,
    }
    runner[task.kind](study, config, **task.params)
    return task_id


def _scenario_overrides(config: StudyConfig) -> dict[str, dict]:
    over = {"density": config.data.density}
    if config.data.duration_s is not None:
        over["duration_s"] = config.data.duration_s
    return {name: dict(over) for name in config.data.scenarios}


def _sensors(config: StudyConfig):
    """The same sensors for demonstrations and closed-loop evaluation."""
    from driving.config import CameraConfig, SensorConfig

    size = config.data.image_size
    return SensorConfig(camera=CameraConfig(height=size, width=size))


def _collect(study: Path, config: StudyConfig, split: str) -> None:
    from driving.collect import CollectConfig, collect

    episodes = {
        "train": config.data.train_episodes,
        "val": config.data.val_episodes,
        "test": config.data.test_episodes,
    }[split]
    collect_config = CollectConfig(
        scenarios=list(config.data.scenarios),
        episodes=episodes,
        split=split,
        scenario_overrides=_scenario_overrides(config),
        sensors=_sensors(config),
    )
    collect(collect_config, data_dir(study, split), workers=1, progress=False)


def _trainer(max_steps: int, ckpt_dir: Path, log_dir: Path, name: str):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from training.run_folders import LogVersions

    every = max(1, min(200, max_steps // 4))
    return L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        limit_val_batches=0,
        deterministic=True,
        logger=CSVLogger(save_dir=str(log_dir), name=name),
        callbacks=[
            ModelCheckpoint(dirpath=str(ckpt_dir), every_n_train_steps=every, save_last=True, save_top_k=0),
            LogVersions(),
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def _fit(trainer, stage, datamodule, ckpt_dir: Path) -> None:
    """Fit, resuming from the last checkpoint of an interrupted attempt (weights only, no unpickling)."""
    from training.run_folders import resume_fit_folders

    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if last.exists() else None
    resume_fit_folders(trainer, ckpt_path, field=f"checkpoint of {ckpt_dir.name}")  # same log version
    trainer.fit(stage, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)


def _datamodule(study: Path, batch_size: int, seed: int):
    from driving.datamodule import DrivingDataModule

    return DrivingDataModule(
        data_dir(study, "train"), data_dir(study, "val"), batch_size=batch_size, seed=seed
    )


def _ue(study: Path, config: StudyConfig) -> None:
    import lightning as L

    from training.optim import OptimConfig
    from training.stages import UEPretrainStage

    L.seed_everything(0, workers=True, verbose=False)
    stage = UEPretrainStage(
        preset=config.preset,
        optim=OptimConfig(lr=1e-3, warmup_steps=min(20, config.pretrain_ue_steps)),
        export_dir=str(study / "ue"),
    )
    ckpt = study / "work" / "ue_ckpt"
    _fit(
        _trainer(config.pretrain_ue_steps, ckpt, study / "logs", "ue"),
        stage,
        _datamodule(study, config.ae.batch_size, 0),
        ckpt,
    )


def _ae(study: Path, config: StudyConfig, seed: int) -> None:
    import lightning as L

    from training.optim import OptimConfig
    from training.policy import BackboneSpec
    from training.stages import ActionExpertStage

    L.seed_everything(seed, workers=True, verbose=False)
    ue = str(study / "ue") if config.pretrain_ue_steps > 0 else None
    spec = config.ae
    stage = ActionExpertStage(
        backbone=BackboneSpec(preset=config.preset, ue_checkpoint=ue, seed=seed),
        head="mlp",
        head_kwargs=config.head("mlp").kwargs or None,
        optim=OptimConfig(lr=spec.lr, warmup_steps=spec.warmup_steps),
        export_dir=str(policy_dir(study, seed, "mlp")),
    )
    ckpt = study / "work" / f"ae_{seed}"
    _fit(
        _trainer(spec.steps, ckpt, study / "logs", f"ae_{seed}"),
        stage,
        _datamodule(study, spec.batch_size, seed),
        ckpt,
    )


def _refine(study: Path, config: StudyConfig, seed: int, head: str) -> None:
    import lightning as L

    from training.optim import OptimConfig
    from training.stages import RefinerStage

    L.seed_everything(seed, workers=True, verbose=False)
    spec, head_spec = config.refiner, config.head(head)
    stage = RefinerStage(
        policy=str(policy_dir(study, seed, "mlp")),
        head=head_spec.name,
        head_kwargs=head_spec.kwargs,
        optim=OptimConfig(lr=spec.lr, warmup_steps=spec.warmup_steps),
        export_dir=str(policy_dir(study, seed, head)),
    )
    ckpt = study / "work" / f"refine_{seed}_{head}"
    _fit(
        _trainer(spec.steps, ckpt, study / "logs", f"refine_{seed}_{head}"),
        stage,
        _datamodule(study, spec.batch_size, seed),
        ckpt,
    )


def _closed_loop(study: Path, config: StudyConfig, policy, rid: str) -> dict:
    from driving import EvalConfig, build_scenario, split_seeds
    from training.evaluate import evaluate_closed_loop

    scenarios = [build_scenario(name, **over) for name, over in _scenario_overrides(config).items()]
    seeds = split_seeds("test", config.eval.episodes)
    episodes = study / RUNS_DIR / f"{rid}.episodes.jsonl"
    eval_config = EvalConfig(sensors=_sensors(config))
    summary = evaluate_closed_loop(policy, scenarios, seeds, records_path=episodes, eval_config=eval_config)
    records = read_jsonl(episodes)
    summary["episode_scores"] = {f"{r['scenario']}:{r['seed']}": r["score"] for r in records}
    return summary


def _eval(study: Path, config: StudyConfig, head: str, seed: int, sampling_seed: int, run_id: str) -> None:
    from mot.runtime import FastSlowPlanner
    from training.evaluate import evaluate_open_loop
    from training.policy import load_pretrained

    start = time.perf_counter()
    backbone = load_pretrained(policy_dir(study, seed, head))
    record = {
        "run_id": run_id,
        "kind": "head",
        "head": head,
        "training_seed": seed,
        "sampling_seed": sampling_seed,
    }
    if config.eval.open_loop:
        record["open_loop"] = evaluate_open_loop(
            backbone, str(data_dir(study, "test")), sampling_seed=sampling_seed
        )
    planner = FastSlowPlanner(backbone, refresh_every=config.eval.refresh_every, seed=sampling_seed)
    record["closed_loop"] = _closed_loop(study, config, planner, run_id)
    record["wall_s"] = round(time.perf_counter() - start, 2)
    write_json_atomic(run_path(study, run_id), record)


def _baseline(study: Path, config: StudyConfig, name: str, run_id: str) -> None:
    from driving.baselines import build_policy
    from training.evaluate import constant_velocity_open_loop

    start = time.perf_counter()
    record = {
        "run_id": run_id,
        "kind": "baseline",
        "head": name,
        "training_seed": None,
        "sampling_seed": None,
    }
    if name == "constant_velocity" and config.eval.open_loop:
        record["open_loop"] = constant_velocity_open_loop(str(data_dir(study, "test")))
    record["closed_loop"] = _closed_loop(study, config, build_policy(name), run_id)
    record["wall_s"] = round(time.perf_counter() - start, 2)
    write_json_atomic(run_path(study, run_id), record)
