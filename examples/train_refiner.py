"""Train a diffusion refiner around a trained action expert in Lightning, then compare it with the
AE's own MLP head on held-out demonstrations (the paper's appendix A.3 stage).

    python examples/train_refiner.py --out runs/example_refiner                  # collects, trains the AE, then the refiner
    python examples/train_refiner.py --out runs/example_refiner --data data/tiny --policy runs/tiny/policy_mlp

Without --policy an AE + MLP head is trained first (the tiny preset, its UE built in code). The
refiner stage freezes the AE and trains only the head's denoiser (`fine_tune_ae=True` would let the
loss reach the AE). Outputs: OUT/data (unless --data), OUT/policy_mlp, OUT/policy_diffusion.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L


def collect_data(root: Path, scenarios: list[str], train_episodes: int) -> Path:
    """Expert demonstrations on train / val / test seeds (resumes if the folders exist)."""
    from driving.collect import CollectConfig, collect

    overrides = {name: {"duration_s": 12.0} for name in scenarios}
    for split, episodes in (("train", train_episodes), ("val", 1), ("test", 1)):
        config = CollectConfig(
            scenarios=scenarios, episodes=episodes, split=split, scenario_overrides=overrides
        )
        collect(config, root / split, workers=2, progress=False)
    return root


def trainer(steps: int, out: Path, name: str) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        limit_val_batches=0,
        deterministic=True,
        logger=L.pytorch.loggers.CSVLogger(str(out / "logs"), name=name),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def train_ae(data: Path, out: Path, steps: int, seed: int) -> Path:
    from driving.datamodule import DrivingDataModule
    from training.optim import OptimConfig
    from training.policy import BackboneSpec
    from training.stages import ActionExpertStage

    L.seed_everything(seed, workers=True, verbose=False)
    stage = ActionExpertStage(
        backbone=BackboneSpec(preset="tiny", seed=seed),
        head="mlp",
        optim=OptimConfig(lr=2e-3, warmup_steps=min(50, steps // 4)),
        export_dir=str(out / "policy_mlp"),
    )
    dm = DrivingDataModule(data / "train", data / "val", batch_size=16, seed=seed)
    trainer(steps, out, "ae").fit(stage, datamodule=dm)  # exports the policy folder at the end
    return out / "policy_mlp"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/example_refiner")
    parser.add_argument(
        "--data", default=None, help="dataset root with train/ val/ test/ (default: collect one)"
    )
    parser.add_argument("--policy", default=None, help="a trained AE policy folder (default: train one)")
    parser.add_argument("--scenarios", nargs="+", default=["highway", "merge"])
    parser.add_argument("--train-episodes", type=int, default=8, help="per scenario, when collecting")
    parser.add_argument("--ae-steps", type=int, default=400)
    parser.add_argument("--refiner-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from driving.datamodule import DrivingDataModule
    from training.evaluate import evaluate_open_loop
    from training.optim import OptimConfig
    from training.policy import load_pretrained, with_head
    from training.stages import RefinerStage

    out = Path(args.out)
    data = Path(args.data) if args.data else collect_data(out / "data", args.scenarios, args.train_episodes)
    policy = Path(args.policy) if args.policy else train_ae(data, out, args.ae_steps, args.seed)

    # The refiner stage: a diffusion head built around the trained AE's MLP head, AE frozen.
    L.seed_everything(args.seed, workers=True, verbose=False)
    stage = RefinerStage(
        policy=str(policy),
        head="diffusion",
        head_kwargs={"refiner": {"dim": 64, "depth": 2, "moa": {"num_heads": 4}}},
        optim=OptimConfig(lr=1e-3, warmup_steps=min(50, args.refiner_steps // 4)),
        export_dir=str(out / "policy_diffusion"),
    )
    dm = DrivingDataModule(data / "train", data / "val", batch_size=16, seed=args.seed)
    trainer(args.refiner_steps, out, "refiner").fit(stage, datamodule=dm)

    # Held-out demonstrations: the refined plan vs the AE's own MLP plan (the refiner's prior).
    refined = load_pretrained(out / "policy_diffusion")
    results = {"diffusion": evaluate_open_loop(refined, str(data / "test"), sampling_seed=0)}
    with_head(refined.ae, "mlp")  # unwrap the diffusion head back to its prior: the same AE, MLP head
    results["mlp (prior)"] = evaluate_open_loop(refined, str(data / "test"))
    print(
        f"{'head':<12} {'L2 1s':>7} {'L2 2s':>7} {'L2 3s':>7} {'L2 avg':>7}  (m, ST-P3, {results['mlp (prior)']['samples']} test samples)"
    )
    for name, r in results.items():
        print(
            f"{name:<12} {r['l2_1s_stp3']:7.3f} {r['l2_2s_stp3']:7.3f} {r['l2_3s_stp3']:7.3f} {r['l2_avg_stp3']:7.3f}"
        )
    print(f"policies: {policy} (MLP), {out / 'policy_diffusion'} (diffusion)")
    return results


if __name__ == "__main__":
    main()
