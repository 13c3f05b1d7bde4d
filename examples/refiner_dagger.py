"""DAgger for the refiner: roll out a study's diffusion policy, label its states with the expert, and
train the refiner again on the study's data plus those rollouts (docs/reference-study.md, "DAgger
for the refiner").

A study's DAgger rounds roll out the MLP policy only: the refiner trains on the aggregated data but
never on the states its own plans lead to. A study config can run refiner rounds as stages of its own
(`refiner_dagger: {rounds: 1, ...}`; the reference profile does); this script adds one such round to a
study that finished without them, per training seed, and writes what that stage would (the tests check
the two byte for byte):

1. roll out `seeds/T/policy_diffusion` (sampling seed 0, the study's DART noise, beta 0) on the
   study's DAgger episode counts (per scenario, plus the extra scenarios), on train-split seeds after
   every seed the study used, with the expert labelling every visited state;
2. train a fresh refiner around the same `seeds/T/policy_mlp` exactly as the study's refiner task
   does (same head settings, steps, optimiser, seed), on the study's training folders plus (1).

    python examples/refiner_dagger.py --study runs/reference --seed 0 --out runs/refiner_dagger
    automot eval --ckpt runs/refiner_dagger/0/policy_diffusion --closed-loop --split test \\
        --episodes 10 --sampling-seed 0 --json

Run it from the working directory the study was run from (its policies name their UE folder as the
study was given it). Every piece resumes after kill -9 (collection shard by shard, training from its
last checkpoint).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", required=True, help="a finished head-comparison study folder")
    parser.add_argument("--seed", type=int, required=True, help="the training seed to continue")
    parser.add_argument("--out", required=True, help="folder for the rollouts and the new policy")
    parser.add_argument("--head", default="diffusion", help="the study's refining head label")
    args = parser.parse_args(argv)

    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from driving.datamodule import DrivingDataModule
    from driving.onpolicy import ControlNoise
    from studies.config import StudyConfig, build_config
    from studies.tasks import data_dir, policy_dir, rollout_collect_config, train_dirs
    from training.dagger import collect_round
    from training.optim import OptimConfig
    from training.stages import RefinerStage

    study, seed = Path(args.study), args.seed
    config = build_config(StudyConfig, json.loads((study / "study.json").read_text()))
    if seed not in config.training_seeds:
        raise SystemExit(
            f"--seed: expected one of the study's training seeds {config.training_seeds}, got {seed}"
        )
    spec, head = config.dagger, config.head(args.head)
    out = Path(args.out) / str(seed)

    def collect(scenarios: list[str], episodes: int, seed_start: int, dest: Path) -> dict:
        return collect_round(
            policy_dir(study, seed, args.head),
            dest,
            rollout_collect_config(config, scenarios, episodes, seed_start),
            beta=0.0,
            noise=ControlNoise(**asdict(spec.noise)),
            round_index=spec.rounds + 1,
            refresh_every=config.eval.refresh_every,
        )

    start = time.perf_counter()
    first = spec.extra_seed_start(config.data.train_episodes, spec.rounds + 1)  # after every seed used
    rollouts = [collect(spec.scenarios_of(config.data.scenarios), spec.episodes, first, out / "rollouts")]
    if spec.has_extra:
        rollouts.append(
            collect(
                list(spec.extra_scenarios), spec.extra_episodes, first + spec.episodes, out / "rollouts_extra"
            )
        )
    episodes = [e for index in rollouts for e in index["episodes"]]
    outcomes = {
        k: sum(e["outcome"] == k for e in episodes) for k in ("completed", "collision", "offroad", "timeout")
    }
    samples = sum(index["num_samples"] for index in rollouts)
    print(
        f"rollouts: {len(episodes)} episodes, {samples} samples, {outcomes}, {time.perf_counter() - start:.0f} s"
    )

    L.seed_everything(seed, workers=True, verbose=False)
    refiner = config.refiner
    stage = RefinerStage(
        policy=str(policy_dir(study, seed, "mlp")),
        head=head.name,
        head_kwargs=head.kwargs,
        optim=OptimConfig(lr=refiner.lr, warmup_steps=refiner.warmup_steps),
        export_dir=str(out / "policy_diffusion"),
        augment=dict(config.refiner_augment) or None,
        keyframe_weight=config.refiner_keyframe_weight,
    )
    rollout_dirs = [str(out / "rollouts"), *([str(out / "rollouts_extra")] if spec.has_extra else [])]
    folders = [*train_dirs(study, seed, spec.rounds, spec.has_extra), *rollout_dirs]
    data = DrivingDataModule(folders, data_dir(study, "val"), batch_size=refiner.batch_size, seed=seed)
    ckpt = out / "work"
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=refiner.steps,
        limit_val_batches=0,
        deterministic=True,
        logger=CSVLogger(save_dir=str(out / "logs"), name="refine"),
        callbacks=[ModelCheckpoint(dirpath=str(ckpt), every_n_train_steps=200, save_last=True, save_top_k=0)],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    last = ckpt / "last.ckpt"
    trainer.fit(stage, datamodule=data, ckpt_path=str(last) if last.exists() else None, weights_only=True)
    print(f"refiner trained: {out / 'policy_diffusion'} ({time.perf_counter() - start:.0f} s in all)")
    return out / "policy_diffusion"


if __name__ == "__main__":
    main()
