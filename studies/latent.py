"""The tasks of a latent-action study (`StudyConfig.latent` set; profile `latent`) and how each runs.
Every task writes its output atomically and is skipped when that output exists; training tasks
resume from their last Lightning checkpoint (as in `studies.tasks`).

    collect:{train,val,test}            data/{split}/            labeled expert demonstrations
    collect:unlabeled                   data/unlabeled/          observations only: the labeled train episodes
                                                                 stripped of labels, or collected without them
    ue                                  ue/                      UE scene pretraining (labeled scene text)
    lam                                 latent/lam/              latent action model (unlabeled data only)
    lam_quality                         latent/lam_quality.json  codebook use, recon vs copy, linear probe
    pretrain:{seed}                     seeds/{seed}/latent_pretrained/   AE + latent head on the LAM's codes
    finetune:{arm}:{pct}:{seed}         seeds/{seed}/latent_{arm}_{pct}/  arm = pretrained | scratch
    eval:{arm}:{pct}:{seed}             runs/{arm}@{pct}__t{seed}__s0.json  open + closed loop
    distill:{seed}                      seeds/{seed}/latent_student/      from pretrained @ distill_fraction
    eval_student:{seed}                 runs/student__t{seed}__s0.json    open + closed loop + latency
    baseline:{name}                     runs/{name}.json

The pretraining, fine-tuning and distillation tasks share the frozen UE's per-sample caches through
`work/ue_store/` (`training.ue_store`: what a task reads is the bits it would compute). The labeled
fine-tuning sets are nested, scenario-stratified shares of the labeled train episodes
(`latent.data.select_episodes`, seeded by `fraction_seed`), the same for both arms and every seed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from automot import spec
from automot.io import write_json_atomic
from studies.config import StudyConfig
from studies.tasks import (
    RUNS_DIR,
    Task,
    _closed_loop,
    _fit,
    _trainer,
    _ue,
    data_dir,
    run_id,
    run_path,
    scenario_overrides,
    study_sensors,
    ue_store_dir,
)

ARMS = ("pretrained", "scratch")
STUDENT = "student"


def pct(fraction: float) -> str:
    return f"{100 * fraction:g}"


def arm_key(arm: str, fraction: float) -> str:
    """The run key ("head" in run records) of an arm at a label fraction, e.g. "pretrained@10"."""
    return f"{arm}@{pct(fraction)}"


def lam_dir(study: Path) -> Path:
    return study / "latent" / "lam"


def quality_path(study: Path) -> Path:
    return study / "latent" / "lam_quality.json"


def pretrained_dir(study: Path, seed: int) -> Path:
    return study / "seeds" / str(seed) / "latent_pretrained"


def finetuned_dir(study: Path, seed: int, arm: str, fraction: float) -> Path:
    return study / "seeds" / str(seed) / f"latent_{arm}_{pct(fraction)}"


def student_dir(study: Path, seed: int) -> Path:
    return study / "seeds" / str(seed) / "latent_student"


def plan_latent_tasks(config: StudyConfig) -> list[Task]:
    lat = config.latent
    tasks = [Task(f"collect:{s}", "collect", {"split": s}) for s in ("train", "val", "test")]
    strip = lat.unlabeled == "strip"
    tasks.append(Task("collect:unlabeled", "latent_collect", {}, ("collect:train",) if strip else ()))
    ue_deps = ("collect:train", "collect:val")
    if config.pretrain_ue_steps > 0:
        tasks.append(Task("ue", "ue", {}, ue_deps))
    after_ue = ("ue",) if config.pretrain_ue_steps > 0 else ue_deps
    tasks.append(Task("lam", "lam", {}, ("collect:unlabeled", "collect:val")))
    tasks.append(Task("lam_quality", "lam_quality", {}, ("lam", "collect:train", "collect:test")))
    for seed in config.training_seeds:
        tasks.append(Task(f"pretrain:{seed}", "pretrain", {"seed": seed}, ("lam", *after_ue)))
        for arm in ARMS:
            for f in lat.label_fractions:
                deps = (f"pretrain:{seed}",) if arm == "pretrained" else ("lam", *after_ue)
                params = {"seed": seed, "arm": arm, "fraction": f}
                tasks.append(Task(f"finetune:{arm}:{pct(f)}:{seed}", "finetune", params, deps))
                rid = run_id(arm_key(arm, f), seed, 0)
                tasks.append(
                    Task(
                        f"eval:{arm}:{pct(f)}:{seed}",
                        "latent_eval",
                        {**params, "run_id": rid},
                        (f"finetune:{arm}:{pct(f)}:{seed}", "collect:test"),
                    )
                )
        teacher = f"finetune:pretrained:{pct(lat.distill_fraction)}:{seed}"
        tasks.append(Task(f"distill:{seed}", "distill", {"seed": seed}, (teacher,)))
        rid = run_id(STUDENT, seed, 0)
        tasks.append(
            Task(
                f"eval_student:{seed}",
                "student_eval",
                {"seed": seed, "run_id": rid},
                (f"distill:{seed}", "collect:test"),
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


def latent_is_done(study: Path, task: Task) -> bool | None:
    """Whether a latent task's output exists; None for kinds `studies.tasks.is_done` handles."""
    p = task.params
    marker = {
        "latent_collect": lambda: data_dir(study, "unlabeled") / "index.json",
        "lam": lambda: lam_dir(study) / "lam_config.json",
        "lam_quality": lambda: quality_path(study),
        "pretrain": lambda: pretrained_dir(study, p["seed"]) / "mot_config.json",
        "finetune": lambda: finetuned_dir(study, p["seed"], p["arm"], p["fraction"]) / "mot_config.json",
        "distill": lambda: student_dir(study, p["seed"]) / "student_config.json",
        "latent_eval": lambda: run_path(study, p["run_id"]),
        "student_eval": lambda: run_path(study, p["run_id"]),
    }.get(task.kind)
    if marker is None:
        return None
    path = marker()
    if task.kind == "latent_collect":
        return path.exists() and '"complete": true' in path.read_text()
    return path.exists()


def latent_runners() -> dict:
    """Task kind -> runner(study, config, *, status, **params); the latent tasks report no progress of
    their own (`status` is accepted and unused), the shared UE task does."""

    def quiet(fn):
        return lambda study, config, status=None, **params: fn(study, config, **params)

    own = {
        "collect": _collect_two_workers,
        "latent_collect": _collect_unlabeled,
        "lam": _lam,
        "lam_quality": _lam_quality,
        "pretrain": _pretrain,
        "finetune": _finetune,
        "latent_eval": _eval_arm,
        "distill": _distill,
        "student_eval": _eval_student,
    }
    return {"ue": _ue, **{kind: quiet(fn) for kind, fn in own.items()}}


def _collect_two_workers(study: Path, config: StudyConfig, split: str) -> None:
    """The labeled splits as `studies.tasks._collect` writes them, with two collection processes: the
    train set is the long pole of this study and nothing else can run before it (shards are
    byte-deterministic whatever the number of workers, so the dataset is the same)."""
    from driving.collect import CollectConfig, collect

    episodes = {
        "train": config.data.train_episodes,
        "val": config.data.val_episodes,
        "test": config.data.test_episodes,
    }
    collect_config = CollectConfig(
        scenarios=list(config.data.scenarios),
        episodes=episodes[split],
        split=split,
        scenario_overrides=scenario_overrides(config),
        sensors=study_sensors(config),
    )
    collect(collect_config, data_dir(study, split), workers=2, progress=False)


def _collect_unlabeled(study: Path, config: StudyConfig) -> None:
    from driving.collect import CollectConfig, collect
    from latent.data import strip_labels

    if config.latent.unlabeled == "strip":
        strip_labels(data_dir(study, "train"), data_dir(study, "unlabeled"))
        return
    collect_config = CollectConfig(
        scenarios=list(config.data.scenarios),
        episodes=config.latent.unlabeled_episodes,
        split="train",
        scenario_overrides=scenario_overrides(config),
        sensors=study_sensors(config),
        labeled=False,
    )
    collect(collect_config, data_dir(study, "unlabeled"), workers=1, progress=False)


def _optim(spec_):
    from training.optim import OptimConfig

    return OptimConfig(lr=spec_.lr, warmup_steps=spec_.warmup_steps)


def _ue_folder(study: Path, config: StudyConfig) -> str | None:
    return str(study / "ue") if config.pretrain_ue_steps > 0 else None


def _transitions(study: Path, train: str, val: str | None, batch_size: int, seed: int, **dataset):
    from latent.datamodule import TransitionDataModule

    return TransitionDataModule(
        data_dir(study, train),
        None if val is None else data_dir(study, val),
        batch_size=batch_size,
        seed=seed,
        **dataset,
    )


def _lam(study: Path, config: StudyConfig) -> None:
    import lightning as L

    from latent.config import LAMConfig
    from latent.data import TransitionDataset
    from training.stages import LAMStage

    L.seed_everything(0, workers=True, verbose=False)
    lam_config = LAMConfig(**config.latent.lam)
    image = TransitionDataset(
        data_dir(study, "unlabeled"), offsets_s=(lam_config.horizon_s,), sensors=False
    ).image_size
    train = config.latent.lam_train
    stage = LAMStage(lam=lam_config, image_size=image, optim=_optim(train), export_dir=str(lam_dir(study)))
    dm = _transitions(
        study,
        "unlabeled",
        None,
        train.batch_size,
        0,
        offsets_s=(lam_config.horizon_s,),
        observation=lam_config.observation,
        sensors=False,
        speeds=lam_config.odometry,
    )
    ckpt = study / "work" / "lam"
    _fit(_trainer(train.steps, ckpt, study / "logs", "lam"), stage, dm, ckpt)


def _lam_quality(study: Path, config: StudyConfig) -> None:
    from latent.lam import load_lam
    from latent.quality import lam_quality

    lam = load_lam(lam_dir(study))
    result = lam_quality(
        lam,
        data_dir(study, "test"),
        probe_train_dirs=data_dir(study, "train"),
        probe_eval_dirs=data_dir(study, "test"),
    )
    write_json_atomic(quality_path(study), result)


def _pretrain(study: Path, config: StudyConfig, seed: int) -> None:
    import lightning as L

    from training.policy import BackboneSpec
    from training.stages import LatentPretrainStage

    L.seed_everything(seed, workers=True, verbose=False)
    train = config.latent.pretrain
    stage = LatentPretrainStage(
        lam=str(lam_dir(study)),
        backbone=BackboneSpec(preset=config.preset, ue_checkpoint=_ue_folder(study, config), seed=seed),
        optim=_optim(train),
        export_dir=str(pretrained_dir(study, seed)),
        speed_weight=config.latent.pretrain_speed_weight,
        plan_weight=config.latent.pretrain_plan_weight,
        ue_store=str(ue_store_dir(study)),
        hidden=tuple(config.latent.pretrain_hidden),
    )
    dm = _transitions(
        study,
        "unlabeled",
        None,
        train.batch_size,
        seed,
        offsets_s=stage.offsets_s,
        observation=stage.lam.config.observation,
        future_speed=config.latent.pretrain_speed_weight > 0,
        speeds=stage.lam.config.odometry,
    )
    ckpt = study / "work" / f"pretrain_{seed}"
    _fit(_trainer(train.steps, ckpt, study / "logs", f"pretrain_{seed}"), stage, dm, ckpt)


def _finetune(study: Path, config: StudyConfig, seed: int, arm: str, fraction: float) -> None:
    import lightning as L

    from training.policy import BackboneSpec
    from training.stages import LatentFinetuneStage

    L.seed_everything(seed, workers=True, verbose=False)
    train, lat = config.latent.finetune, config.latent
    ue = _ue_folder(study, config)
    if arm == "pretrained":
        backbone = BackboneSpec(init_from=str(pretrained_dir(study, seed)), ue_checkpoint=ue)
    else:
        backbone = BackboneSpec(preset=config.preset, ue_checkpoint=ue, seed=seed)
    stage = LatentFinetuneStage(
        backbone=backbone,
        head_kwargs=config.heads[0].kwargs or None,  # the study's one (MLP) head: both arms' planning head
        lam=str(lam_dir(study)) if arm == "pretrained" else None,
        latent_weight=lat.finetune_latent_weight if arm == "pretrained" else 0.0,
        pretrained_lr_scale=lat.finetune_pretrained_lr_scale if arm == "pretrained" else 1.0,
        optim=_optim(train),
        export_dir=str(finetuned_dir(study, seed, arm, fraction)),
        ue_store=str(ue_store_dir(study)),
    )
    dm = _transitions(
        study,
        "train",
        None,
        train.batch_size,
        seed,
        offsets_s=spec.DECISION_HORIZONS_S,
        labels=True,
        require_future=False,
        episode_fraction=fraction,
        fraction_seed=lat.fraction_seed,
        speeds=stage.lam is not None and stage.lam.config.odometry,
    )
    name = f"finetune_{arm}_{pct(fraction)}_{seed}"
    ckpt = study / "work" / name
    _fit(_trainer(train.steps, ckpt, study / "logs", name), stage, dm, ckpt)


def _distill(study: Path, config: StudyConfig, seed: int) -> None:
    import lightning as L

    from training.stages import DistillStage

    L.seed_everything(seed, workers=True, verbose=False)
    train, lat = config.latent.distill, config.latent
    stage = DistillStage(
        teacher=str(finetuned_dir(study, seed, "pretrained", lat.distill_fraction)),
        student={**lat.student, "seed": seed},
        optim=_optim(train),
        seed=seed,
        export_dir=str(student_dir(study, seed)),
        ue_store=str(ue_store_dir(study)),
    )
    dm = _transitions(
        study,
        "train",
        None,
        train.batch_size,
        seed,
        offsets_s=spec.DECISION_HORIZONS_S,
        labels=True,
        require_future=False,
        episode_fraction=lat.distill_fraction,
        fraction_seed=lat.fraction_seed,
    )
    ckpt = study / "work" / f"distill_{seed}"
    _fit(_trainer(train.steps, ckpt, study / "logs", f"distill_{seed}"), stage, dm, ckpt)


def _record(rid: str, key: str, seed: int, fraction: float | None) -> dict:
    return {
        "run_id": rid,
        "kind": "latent",
        "head": key,
        "training_seed": seed,
        "sampling_seed": 0,
        "label_fraction": fraction,
    }


def _eval_arm(study: Path, config: StudyConfig, seed: int, arm: str, fraction: float, run_id: str) -> None:
    from training.evaluate import evaluate_open_loop
    from training.policies import load_policy
    from training.policy import load_pretrained

    start = time.perf_counter()
    folder = finetuned_dir(study, seed, arm, fraction)
    record = _record(run_id, arm_key(arm, fraction), seed, fraction)
    if config.eval.open_loop:
        record["open_loop"] = evaluate_open_loop(load_pretrained(folder), str(data_dir(study, "test")))
    if config.latent.closed_loop(fraction):
        policy = load_policy(folder, refresh_every=config.eval.refresh_every, seed=0)
        record["closed_loop"] = _closed_loop(study, config, policy, run_id)
    record["wall_s"] = round(time.perf_counter() - start, 2)
    write_json_atomic(run_path(study, run_id), record)


def _eval_student(study: Path, config: StudyConfig, seed: int, run_id: str) -> None:
    from driving.dataset import read_index
    from latent.bench import step_latencies
    from latent.student import load_student, parameter_count
    from mot.bench import synthetic_observations
    from training.evaluate import evaluate_student_open_loop
    from training.policies import load_policy
    from training.policy import load_pretrained

    start = time.perf_counter()
    folder = student_dir(study, seed)
    record = _record(run_id, STUDENT, seed, config.latent.distill_fraction)
    student = load_student(folder)
    if config.eval.open_loop:
        record["open_loop"] = evaluate_student_open_loop(student, str(data_dir(study, "test")))
    record["closed_loop"] = _closed_loop(study, config, load_policy(folder), run_id)
    teacher = load_pretrained(finetuned_dir(study, seed, "pretrained", config.latent.distill_fraction))
    dims = read_index(data_dir(study, "test"))["dims"]
    obs = synthetic_observations(
        4, frames=dims["T"], views=1, image_size=dims["H"], bev_size=dims["Hb"], seed=seed
    )  # latency depends on sizes, not on content
    record["latency"] = step_latencies(student, teacher, obs, steps=config.latent.latency_steps)
    record["parameters"] = {"student": parameter_count(student), "teacher_ae": parameter_count(teacher.ae)}
    record["wall_s"] = round(time.perf_counter() - start, 2)
    write_json_atomic(run_path(study, run_id), record)


def read_quality(study: Path) -> dict | None:
    path = quality_path(study)
    return json.loads(path.read_text()) if path.exists() else None


__all__ = ["ARMS", "RUNS_DIR", "STUDENT", "arm_key", "latent_is_done", "latent_runners", "plan_latent_tasks"]
