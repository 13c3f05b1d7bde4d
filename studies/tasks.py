"""The tasks of a study and how each one runs. Every task writes its output atomically under the
study folder and is skipped when that output exists, so a study resumes after any interruption.

    collect:{split}                 data/{split}/         expert demonstrations (train, val, test); the
                                                          train split perturbed (DART) when `dart` is on
    ue                              ue/                   UE scene pretraining (frozen afterwards)
    ae:{seed}                       seeds/{seed}/policy_mlp/          AE + MLP head (behaviour cloning)
    dagger:{seed}:{r}               data/dagger/{seed}/r{r}/          round r's on-policy episodes, expert-labelled
    ae:{seed}:r{r}                  seeds/{seed}/policy_mlp/          fine-tuned on train + rounds 1..r
                                    (with DAgger rounds, earlier rounds' policies live in seeds/{seed}/rounds/{r}/)
    refine:{seed}:{head}            seeds/{seed}/policy_{head}/       refiner around that AE
    rdagger:{seed}:{head}:{r}       data/refiner_dagger/{seed}/{head}/r{r}/   round r's rollouts of that refiner
    refine:{seed}:{head}:r{r}       seeds/{seed}/policy_{head}/       the refiner again, on the AE's data +
                                                                      its rounds 1..r (from scratch)
                                    (with refiner DAgger rounds, earlier rounds' refiners live in
                                    seeds/{seed}/refiner_rounds/{head}/{r}/)
    eval:{head}:{seed}:{sampling}   runs/{run_id}.json    open + closed loop of one head/seed pair
    baseline:{name}                 runs/{run_id}.json    expert / constant velocity, closed loop

A task's result depends only on the config and its own seeds: training seeds the RNG, runs single-
threaded and deterministic, and resumes from its last Lightning checkpoint, so a resumed study ends
with exactly the numbers of an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from automot.io import read_jsonl, write_json_atomic
from studies.config import StudyConfig
from studies.progress import StatusWriter, training_callback

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
    if config.latent is not None:
        from studies.latent import plan_latent_tasks

        return plan_latent_tasks(config)
    tasks = [Task(f"collect:{split}", "collect", {"split": split}) for split in ("train", "val", "test")]
    ue_deps = ("collect:train", "collect:val")
    if config.pretrain_ue_steps > 0:
        tasks.append(Task("ue", "ue", {}, ue_deps))
    ae_deps = ("ue",) if config.pretrain_ue_steps > 0 else ue_deps
    rounds = config.dagger.rounds
    for seed in config.training_seeds:
        tasks.append(Task(ae_task_id(seed, 0), "ae", {"seed": seed, "round_index": 0}, ae_deps))
        for r in range(1, rounds + 1):
            tasks.append(
                Task(
                    f"dagger:{seed}:{r}",
                    "dagger",
                    # "extra": the round also collects its extra rollouts (key absent without them)
                    {"seed": seed, "round_index": r, **({"extra": True} if config.dagger.has_extra else {})},
                    (ae_task_id(seed, r - 1),),
                )
            )
            tasks.append(
                Task(ae_task_id(seed, r), "ae", {"seed": seed, "round_index": r}, (f"dagger:{seed}:{r}",))
            )
        for head in config.heads:
            if head.key == "mlp":
                continue
            # "round_index": the study has refiner-DAgger rounds (key absent without them)
            refined = {"round_index": 0} if config.refiner_dagger.rounds else {}
            tasks.append(
                Task(
                    refine_task_id(seed, head.key, 0),
                    "refine",
                    {"seed": seed, "head": head.key, **refined},
                    (ae_task_id(seed, rounds),),
                )
            )
            extra = {"extra": True} if config.refiner_dagger.has_extra else {}
            for r in range(1, config.refiner_dagger.rounds + 1):
                tasks.append(
                    Task(
                        f"rdagger:{seed}:{head.key}:{r}",
                        "rdagger",
                        {"seed": seed, "head": head.key, "round_index": r, **extra},
                        (refine_task_id(seed, head.key, r - 1),),
                    )
                )
                tasks.append(
                    Task(
                        refine_task_id(seed, head.key, r),
                        "refine",
                        {"seed": seed, "head": head.key, "round_index": r},
                        (f"rdagger:{seed}:{head.key}:{r}",),
                    )
                )
    for head in config.heads:
        for seed in config.training_seeds:
            policy_task = (
                ae_task_id(seed, rounds)
                if head.key == "mlp"
                else refine_task_id(seed, head.key, config.refiner_dagger.rounds)
            )
            for sampling in config.head_sampling_seeds(head.key):
                rid = run_id(head.key, seed, sampling)
                params = {"head": head.key, "seed": seed, "sampling_seed": sampling, "run_id": rid}
                tasks.append(
                    Task(f"eval:{head.key}:{seed}:{sampling}", "eval", params, (policy_task, "collect:test"))
                )
        tasks.append(
            Task(
                f"failures:{head.key}",
                "failures",
                {"head": head.key},
                tuple(
                    f"eval:{head.key}:{t}:{s}"
                    for t in config.training_seeds
                    for s in config.head_sampling_seeds(head.key)
                ),
            )
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


def ue_store_dir(study: Path) -> Path:
    """The frozen UE's per-sample caches, shared by every training task (`training.ue_store`);
    recomputable, so deleting it only costs time."""
    return study / "work" / "ue_store"


def policy_dir(study: Path, seed: int, head: str) -> Path:
    return study / "seeds" / str(seed) / f"policy_{head}"


def failures_path(study: Path, head: str) -> Path:
    return study / "failures" / f"{head}.json"


def ae_task_id(seed: int, round_index: int) -> str:
    return f"ae:{seed}" if round_index == 0 else f"ae:{seed}:r{round_index}"


def round_policy_dir(study: Path, config: StudyConfig, seed: int, round_index: int) -> Path:
    """The MLP policy of DAgger round `round_index` (0: behaviour cloning); the last round's is the study's."""
    if round_index == config.dagger.rounds:
        return policy_dir(study, seed, "mlp")
    return study / "seeds" / str(seed) / "rounds" / str(round_index) / "policy_mlp"


def round_record_path(study: Path, seed: int, round_index: int) -> Path:
    return study / "seeds" / str(seed) / "rounds" / f"{round_index}.json"


def dagger_data_dir(study: Path, seed: int, round_index: int) -> Path:
    return study / "data" / "dagger" / str(seed) / f"r{round_index}"


def dagger_extra_dir(study: Path, seed: int, round_index: int) -> Path:
    """Round `round_index`'s extra rollouts (`DaggerSpec.extra_scenarios`)."""
    return study / "data" / "dagger" / str(seed) / f"r{round_index}_extra"


def refine_task_id(seed: int, head: str, round_index: int) -> str:
    return f"refine:{seed}:{head}" if round_index == 0 else f"refine:{seed}:{head}:r{round_index}"


def refiner_round_dir(study: Path, config: StudyConfig, seed: int, head: str, round_index: int) -> Path:
    """The refiner of refiner-DAgger round `round_index` (0: trained on the AE's data only); the last
    round's is the study's `policy_{head}`."""
    if round_index == config.refiner_dagger.rounds:
        return policy_dir(study, seed, head)
    return study / "seeds" / str(seed) / "refiner_rounds" / head / str(round_index) / f"policy_{head}"


def refiner_record_path(study: Path, seed: int, head: str, round_index: int) -> Path:
    return study / "seeds" / str(seed) / "refiner_rounds" / head / f"{round_index}.json"


def refiner_rollouts_path(study: Path, seed: int, head: str, round_index: int) -> Path:
    """The record of round `round_index`'s rollouts (written by its rdagger task, read by its refine task)."""
    return refiner_record_path(study, seed, head, round_index).with_suffix(".rollouts.json")


def refiner_dagger_dir(study: Path, seed: int, head: str, round_index: int, extra: bool = False) -> Path:
    """Round `round_index`'s rollouts of the refining head `head` (`extra`: its extra rollouts)."""
    return study / "data" / "refiner_dagger" / str(seed) / head / f"r{round_index}{'_extra' if extra else ''}"


def refiner_train_dirs(study: Path, config: StudyConfig, seed: int, head: str, round_index: int) -> list[str]:
    """The refiner's training data in round `round_index`: the final AE's, then the head's rounds 1..r."""
    dirs = train_dirs(study, seed, config.dagger.rounds, config.dagger.has_extra)
    for r in range(1, round_index + 1):
        dirs.append(str(refiner_dagger_dir(study, seed, head, r)))
        if config.refiner_dagger.has_extra:
            dirs.append(str(refiner_dagger_dir(study, seed, head, r, extra=True)))
    return dirs


def train_dirs(study: Path, seed: int, round_index: int, extra: bool = False) -> list[str]:
    """The training data of round `round_index` of training seed `seed`: demonstrations + its rounds so
    far (with `extra`, each round's extra rollouts after its regular ones)."""
    dirs = [str(data_dir(study, "train"))]
    for r in range(1, round_index + 1):
        dirs.append(str(dagger_data_dir(study, seed, r)))
        if extra:
            dirs.append(str(dagger_extra_dir(study, seed, r)))
    return dirs


def _complete(index: Path) -> bool:
    return index.exists() and '"complete": true' in index.read_text()


def run_path(study: Path, rid: str) -> Path:
    return study / RUNS_DIR / f"{rid}.json"


def is_done(study: Path, task: Task) -> bool:
    from studies.latent import latent_is_done

    latent = latent_is_done(study, task)
    if latent is not None:
        return latent
    p = task.params
    if task.kind == "collect":
        index = data_dir(study, p["split"]) / "index.json"
        return index.exists() and '"complete": true' in index.read_text()
    if task.kind == "ue":
        return (study / "ue" / "config.json").exists()
    if task.kind == "ae":
        return round_record_path(study, p["seed"], p["round_index"]).exists()
    if task.kind == "failures":
        return failures_path(study, p["head"]).exists()
    if task.kind == "dagger":
        done = _complete(dagger_data_dir(study, p["seed"], p["round_index"]) / "index.json")
        if p.get("extra"):
            done = done and _complete(dagger_extra_dir(study, p["seed"], p["round_index"]) / "index.json")
        return done
    if task.kind == "rdagger":
        done = _complete(refiner_dagger_dir(study, p["seed"], p["head"], p["round_index"]) / "index.json")
        if p.get("extra"):
            extra = refiner_dagger_dir(study, p["seed"], p["head"], p["round_index"], extra=True)
            done = done and _complete(extra / "index.json")
        return done and refiner_rollouts_path(study, p["seed"], p["head"], p["round_index"]).exists()
    if task.kind == "refine":
        if "round_index" in p:  # with refiner-DAgger rounds: each round's record is written last
            return refiner_record_path(study, p["seed"], p["head"], p["round_index"]).exists()
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
        "dagger": _dagger,
        "rdagger": _refiner_dagger,
        "refine": _refine,
        "eval": _eval,
        "baseline": _baseline,
        "failures": _failures,
    }
    if config.latent is not None:
        from studies.latent import latent_runners

        runner.update(latent_runners())
    status = StatusWriter(study, task_id, task.kind)
    runner[task.kind](study, config, status=status, **task.params)
    status.finish()
    return task_id


def scenario_overrides(config: StudyConfig) -> dict[str, dict]:
    over = {"density": config.data.density}
    if config.data.duration_s is not None:
        over["duration_s"] = config.data.duration_s
    return {name: dict(over) for name in config.data.scenarios}


def study_sensors(config: StudyConfig):
    """The same sensors for demonstrations and closed-loop evaluation."""
    from driving.config import BEVConfig, CameraConfig, SensorConfig

    size = config.data.image_size
    bev = BEVConfig(turn_signals=config.data.turn_signals, vehicle_trail_s=config.data.vehicle_trail_s)
    return SensorConfig(camera=CameraConfig(height=size, width=size), bev=bev)


def _collect(study: Path, config: StudyConfig, split: str, status: StatusWriter) -> None:
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
        scenario_overrides=scenario_overrides(config),
        sensors=study_sensors(config),
        expert=dict(config.expert),
    )
    total = len(collect_config.episodes_plan())
    status.update("collecting", 0, total, "episode", force=True)
    if split == "train" and config.dart.active:
        from dataclasses import asdict

        from driving.onpolicy import ControlNoise, OnPolicyConfig, collect_on_policy

        noise = ControlNoise(**asdict(config.dart))
        collect_on_policy(OnPolicyConfig(collect=collect_config, noise=noise), data_dir(study, split))
        return
    collect(
        collect_config,
        data_dir(study, split),
        workers=1,
        progress=False,
        on_episode=lambda done: status.update("collecting", done, total, "episode"),
    )


def rollout_collect_config(config: StudyConfig, scenarios: list[str], episodes: int, seed_start: int):
    """The `driving.collect.CollectConfig` of a study's on-policy rollouts: train-split seeds from
    `seed_start`, the study's scenario settings, sensors and expert."""
    from driving.collect import CollectConfig

    overrides = scenario_overrides(config)
    return CollectConfig(
        scenarios=scenarios,
        episodes=episodes,
        split="train",
        seed_start=seed_start,
        scenario_overrides={k: v for k, v in overrides.items() if k in scenarios},
        sensors=study_sensors(config),
        expert=dict(config.expert),
    )


def _roll_out(
    config: StudyConfig,
    spec,
    policy: Path,
    starts: tuple[int, int],
    outs: tuple[Path, Path],
    beta: float,
    salt: int,
) -> dict:
    """One DAgger round's rollouts of `policy` (`spec`: a `DaggerSpec` or `RefinerDaggerSpec`): its
    regular episodes from train-split seed `starts[0]` into `outs[0]`, then, when the spec has extra
    scenarios, those from `starts[1]` into `outs[1]`; the expert labels every visited state. `salt`
    seeds the rollouts' noise. Returns the round's record (times, samples, episode outcomes)."""
    from dataclasses import asdict

    from driving.onpolicy import ControlNoise
    from training.dagger import collect_round

    def collect(scenarios: list[str], episodes: int, seed_start: int, out: Path) -> dict:
        return collect_round(
            policy,
            out,
            rollout_collect_config(config, scenarios, episodes, seed_start),
            beta=beta,
            noise=ControlNoise(**asdict(spec.noise)),
            round_index=salt,
            refresh_every=config.eval.refresh_every,
        )

    start, cpu = time.perf_counter(), time.process_time()
    indexes = [collect(spec.scenarios_of(config.data.scenarios), spec.episodes, starts[0], outs[0])]
    if spec.has_extra:
        indexes.append(collect(list(spec.extra_scenarios), spec.extra_episodes, starts[1], outs[1]))
    episodes = [e for index in indexes for e in index["episodes"]]
    return {
        "collect_s": round_(time.perf_counter() - start),
        "collect_cpu_s": round_(time.process_time() - cpu),  # this process only: single-threaded work
        "samples": sum(index["num_samples"] for index in indexes),
        "episodes": len(episodes),
        "outcomes": {
            k: sum(e["outcome"] == k for e in episodes)
            for k in ("completed", "collision", "offroad", "timeout")
        },
    }


def _dagger(
    study: Path, config: StudyConfig, seed: int, round_index: int, status: StatusWriter, extra: bool = False
) -> None:
    """Round `round_index`'s rollouts of training seed `seed`'s MLP policy (`extra`: the task's marker
    that the round has extra rollouts; `config.dagger` says which)."""
    spec = config.dagger
    record = _roll_out(
        config,
        spec,
        round_policy_dir(study, config, seed, round_index - 1),
        # Fresh layouts every round, after the demonstrations' seeds (each episode has its own seed).
        (
            config.data.train_episodes + (round_index - 1) * spec.episodes,
            spec.extra_seed_start(config.data.train_episodes, round_index),
        ),
        (dagger_data_dir(study, seed, round_index), dagger_extra_dir(study, seed, round_index)),
        beta=spec.beta_of(round_index),
        salt=round_index,
    )
    write_json_atomic(dagger_data_dir(study, seed, round_index).parent / f"r{round_index}.json", record)


def round_(x: float) -> float:
    return round(x, 1)


def _trainer(
    max_steps: int,
    ckpt_dir: Path,
    log_dir: Path,
    name: str,
    status: StatusWriter | None = None,
    callbacks: list | None = None,
):
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
            *(callbacks or []),
            ModelCheckpoint(dirpath=str(ckpt_dir), every_n_train_steps=every, save_last=True, save_top_k=0),
            LogVersions(),
            *([training_callback(status)] if status is not None else []),
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


def _datamodule(study: Path, batch_size: int, seed: int, train: list[str] | None = None):
    from driving.datamodule import DrivingDataModule

    return DrivingDataModule(
        train if train is not None else data_dir(study, "train"),
        data_dir(study, "val"),
        batch_size=batch_size,
        seed=seed,
    )


def _ue(study: Path, config: StudyConfig, status: StatusWriter) -> None:
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
        _trainer(config.pretrain_ue_steps, ckpt, study / "logs", "ue", status),
        stage,
        _datamodule(study, config.ae.batch_size, 0),
        ckpt,
    )


def _validation(config: StudyConfig, stage: str, history_path: Path):
    """The closed-loop validation callback of one training of `stage` ("ae" or "refiner"), writing
    its evaluations to `history_path`; None when the study validates no such training."""
    spec = config.validation
    if not spec.every_n_steps or stage not in spec.stages:
        return None
    from training.callbacks import ClosedLoopValidation

    return ClosedLoopValidation(
        every_n_steps=spec.every_n_steps,
        scenarios=list(config.data.scenarios),
        episodes=spec.episodes,
        refresh_every=config.eval.refresh_every,
        image_size=config.data.image_size,
        turn_signals=config.data.turn_signals,
        vehicle_trail_s=config.data.vehicle_trail_s,
        scenario_overrides=scenario_overrides(config),
        select=spec.select,
        history_path=str(history_path),
    )


def _callbacks(validation) -> list | None:
    return [validation] if validation is not None else None


def _ae(study: Path, config: StudyConfig, seed: int, round_index: int, status: StatusWriter) -> None:
    """Round 0: the AE + MLP head from scratch on the demonstrations; round r: fine-tuned from round
    r - 1 on the demonstrations and DAgger rounds 1..r."""
    import lightning as L

    from training.optim import OptimConfig
    from training.policy import BackboneSpec
    from training.stages import ActionExpertStage

    start, cpu = time.perf_counter(), time.process_time()
    L.seed_everything(seed, workers=True, verbose=False)
    ue = str(study / "ue") if config.pretrain_ue_steps > 0 else None
    if round_index == 0:
        steps, lr, warmup = config.ae.steps, config.ae.lr, config.ae.warmup_steps
        backbone = BackboneSpec(preset=config.preset, ue_checkpoint=ue, seed=seed)
        head_kwargs = config.head("mlp").kwargs or None
    else:
        spec = config.dagger
        steps, lr, warmup = spec.steps, spec.lr, spec.warmup_steps
        previous = round_policy_dir(study, config, seed, round_index - 1)
        backbone = BackboneSpec(init_from=str(previous), ue_checkpoint=ue, seed=seed)
        head_kwargs = None  # keep the trained head
    export = round_policy_dir(study, config, seed, round_index)
    stage = ActionExpertStage(
        backbone=backbone,
        head="mlp",
        head_kwargs=head_kwargs,
        optim=OptimConfig(lr=lr, warmup_steps=warmup),
        export_dir=str(export),
        augment=dict(config.augment) or None,
        keyframe_weight=config.keyframe_weight,
        ue_store=str(ue_store_dir(study)),
    )
    name = f"ae_{seed}" if round_index == 0 else f"ae_{seed}_r{round_index}"
    ckpt = study / "work" / name
    validation = _validation(
        config, "ae", round_record_path(study, seed, round_index).with_suffix(".val.json")
    )
    _fit(
        _trainer(steps, ckpt, study / "logs", name, status, _callbacks(validation)),
        stage,
        _datamodule(
            study, config.ae.batch_size, seed, train_dirs(study, seed, round_index, config.dagger.has_extra)
        ),
        ckpt,
    )
    record = {
        "round": round_index,
        "train_s": round_(time.perf_counter() - start),
        "train_cpu_s": round_(time.process_time() - cpu),
        "steps": steps,
    }
    if validation is not None:
        record["validation"] = {"best": validation.best, "history": validation.history}
    if round_index > 0:
        collected = dagger_data_dir(study, seed, round_index).parent / f"r{round_index}.json"
        if collected.exists():
            record["dagger"] = json.loads(collected.read_text())
    write_json_atomic(round_record_path(study, seed, round_index), record)


def _refine(
    study: Path,
    config: StudyConfig,
    seed: int,
    head: str,
    status: StatusWriter,
    round_index: int | None = None,
) -> None:
    """The refiner of `head` around training seed `seed`'s final MLP policy, from scratch: on the AE's
    training data, and in refiner-DAgger round r (`round_index`) on the head's rollouts 1..r too."""
    import lightning as L

    from training.optim import OptimConfig
    from training.stages import RefinerStage

    start, cpu = time.perf_counter(), time.process_time()
    r = round_index or 0
    L.seed_everything(seed, workers=True, verbose=False)
    spec, head_spec = config.refiner, config.head(head)
    stage = RefinerStage(
        policy=str(policy_dir(study, seed, "mlp")),
        head=head_spec.name,
        head_kwargs=head_spec.kwargs,
        optim=OptimConfig(lr=spec.lr, warmup_steps=spec.warmup_steps),
        export_dir=str(refiner_round_dir(study, config, seed, head, r)),
        augment=dict(config.refiner_augment) or None,
        keyframe_weight=config.refiner_keyframe_weight,
        ue_store=str(ue_store_dir(study)),
    )
    name = f"refine_{seed}_{head}" if r == 0 else f"refine_{seed}_{head}_r{r}"
    ckpt = study / "work" / name
    validation = _validation(
        config, "refiner", refiner_record_path(study, seed, head, r).with_suffix(".val.json")
    )
    _fit(
        _trainer(spec.steps, ckpt, study / "logs", name, status, _callbacks(validation)),
        stage,
        _datamodule(study, spec.batch_size, seed, refiner_train_dirs(study, config, seed, head, r)),
        ckpt,
    )
    if round_index is None:
        return  # a study without refiner-DAgger rounds: no round records (the validation has its file)
    record = {
        "round": r,
        "train_s": round_(time.perf_counter() - start),
        "train_cpu_s": round_(time.process_time() - cpu),
        "steps": spec.steps,
    }
    if validation is not None:
        record["validation"] = {"best": validation.best, "history": validation.history}
    collected = refiner_rollouts_path(study, seed, head, r)
    if collected.exists():
        record["dagger"] = json.loads(collected.read_text())
    write_json_atomic(refiner_record_path(study, seed, head, r), record)


def _refiner_dagger(
    study: Path,
    config: StudyConfig,
    seed: int,
    head: str,
    round_index: int,
    status: StatusWriter,
    extra: bool = False,
) -> None:
    """Refiner-DAgger round `round_index`: roll out the refining head's previous round (sampling seed
    0), the expert labelling every visited state (`extra`: the task's marker that the round has extra
    rollouts; `config.refiner_dagger` says which)."""
    spec = config.refiner_dagger
    first = spec.seed_start(config.data.train_episodes + config.dagger.seeds_used, round_index)
    status.update("rolling out", force=True)
    record = _roll_out(
        config,
        spec,
        refiner_round_dir(study, config, seed, head, round_index - 1),
        (first, first + spec.episodes),
        (
            refiner_dagger_dir(study, seed, head, round_index),
            refiner_dagger_dir(study, seed, head, round_index, extra=True),
        ),
        beta=spec.beta,
        # the noise salt continues the AE's round numbering
        salt=config.dagger.rounds + round_index,
    )
    write_json_atomic(refiner_rollouts_path(study, seed, head, round_index), record)


def _closed_loop(
    study: Path, config: StudyConfig, policy, rid: str, status: StatusWriter | None = None
) -> dict:
    from driving import EvalConfig, build_scenario, split_seeds
    from training.evaluate import evaluate_closed_loop

    scenarios = [build_scenario(name, **over) for name, over in scenario_overrides(config).items()]
    seeds = split_seeds("test", config.eval.episodes)
    episodes = study / RUNS_DIR / f"{rid}.episodes.jsonl"
    eval_config = EvalConfig(sensors=study_sensors(config))
    total, done = len(scenarios) * len(seeds), [len(read_jsonl(episodes))]
    if status is not None:
        status.update("closed loop", done[0], total, "episode", force=True)

    def on_episode(_record) -> None:
        done[0] += 1
        if status is not None:
            status.update("closed loop", done[0], total, "episode")

    summary = evaluate_closed_loop(
        policy, scenarios, seeds, records_path=episodes, eval_config=eval_config, on_episode=on_episode
    )
    records = read_jsonl(episodes)
    summary["episode_scores"] = {f"{r['scenario']}:{r['seed']}": r["score"] for r in records}
    return summary


def _eval(
    study: Path,
    config: StudyConfig,
    head: str,
    seed: int,
    sampling_seed: int,
    run_id: str,
    status: StatusWriter,
) -> None:
    from mot.runtime import FastSlowPlanner
    from training.evaluate import evaluate_open_loop
    from training.policy import load_pretrained
    from training.refine_eval import evaluate_refinement, flat_summary, refines

    start, cpu = time.perf_counter(), time.process_time()
    backbone = load_pretrained(policy_dir(study, seed, head))
    record = {
        "run_id": run_id,
        "kind": "head",
        "head": head,
        "training_seed": seed,
        "sampling_seed": sampling_seed,
    }
    if config.eval.open_loop:
        status.update("open loop", force=True)
        record["open_loop"] = evaluate_open_loop(
            backbone, str(data_dir(study, "test")), sampling_seed=sampling_seed
        )
        if refines(backbone.ae.head) and sampling_seed == config.head_sampling_seeds(head)[0]:
            # Does the refiner beat the plan it starts from? (prior vs refined, same AE, same data)
            # Once per trained model: its diagnostics (steps, K, knockouts) are two thirds of a run's time.
            result = evaluate_refinement(backbone, str(data_dir(study, "test")), sampling_seed=sampling_seed)
            record["refinement"] = flat_summary(result)
    planner = FastSlowPlanner(backbone, refresh_every=config.eval.refresh_every, seed=sampling_seed)
    record["closed_loop"] = _closed_loop(study, config, planner, run_id, status)
    record["wall_s"] = round(time.perf_counter() - start, 2)
    record["cpu_s"] = round(time.process_time() - cpu, 2)
    write_json_atomic(run_path(study, run_id), record)


def _baseline(study: Path, config: StudyConfig, name: str, run_id: str, status: StatusWriter) -> None:
    from driving.baselines import build_policy
    from training.evaluate import constant_velocity_open_loop

    start, cpu = time.perf_counter(), time.process_time()
    record = {
        "run_id": run_id,
        "kind": "baseline",
        "head": name,
        "training_seed": None,
        "sampling_seed": None,
    }
    if name == "constant_velocity" and config.eval.open_loop:
        record["open_loop"] = constant_velocity_open_loop(str(data_dir(study, "test")))
    policy = build_policy(name, config.expert_config())
    record["closed_loop"] = _closed_loop(study, config, policy, run_id, status)
    record["wall_s"] = round(time.perf_counter() - start, 2)
    record["cpu_s"] = round(time.process_time() - cpu, 2)
    write_json_atomic(run_path(study, run_id), record)


def _failures(study: Path, config: StudyConfig, head: str, status: StatusWriter) -> None:
    """Strips of the head's worst episode per scenario (`studies.failures`), listed in failures/{head}.json."""
    from studies.failures import draw_worst_episode, worst_episodes

    runs = [
        json.loads(run_path(study, run_id(head, t, s)).read_text())
        for t in config.training_seeds
        for s in config.head_sampling_seeds(head)
    ]
    listed = {}
    for (key, scenario), worst in sorted(worst_episodes(study, runs).items()):
        path = draw_worst_episode(study, config, key, scenario, worst)
        listed[scenario] = {**worst, "strip": path.name}
    write_json_atomic(failures_path(study, head), listed)
