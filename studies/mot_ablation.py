"""Backbone ablations in the embedded world (issue 12): the mask layouts, chain-of-thought in the
cache, and the paper's tables 5 and 6 (planning and decisions with a stale UE cache).

    automot bench mot-ablation --json --workdir runs/mot_ablation

Variants (`VARIANTS`, overrides of the `tiny` preset):
    reference   the default masks: UE image blocks bidirectional, each AE input group its own causal
                block, route before waypoints (paper section 3.1 text, public AutoMoT code)
    figure3     the UE causal as pretrained, AE modalities bidirectional inside a task, waypoints first
    reasoning   `reference` + up to N generated reasoning tokens in the cache (their hidden states are
                the head's reasoning tokens)

For each variant and training seed: UE scene pretraining (once per UE image attention), AE + MLP head
training, then
- open loop on the test split with the UE's input 0, 1 and 2 history intervals (0.5 s each) older
  than the AE's (NuSync-style asynchronous copies of the same test episodes): L2 at 1/2/3 s and
  decision accuracy (paper tables 5 and 6);
- closed loop (sync fast-slow planner, deterministic) with `refresh_every` k: DS per k for the first
  variant, DS at `--closed-loop-k` for the others;
- for reasoning variants: the generated text against the world's scene text (share of sentences
  reproduced exactly) and one example transcript.

Work directory: every piece is written atomically and skipped when it exists, so a killed run
resumes (training resumes from its last Lightning checkpoint):
    data/{train,val,test,test_async1,test_async2}/   ue_{attention}/   policy_{variant}_{seed}/
    open_loop_{variant}_{seed}.json   closed_loop_{variant}_{seed}_k{k}.json (+ .episodes.jsonl)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

VARIANTS: dict[str, dict] = {
    "reference": {},
    "figure3": {
        "ue": {"image_attention": "causal"},
        "ae": {"cross_modal_causal": False, "plan_order": "waypoints_first"},
    },
    "reasoning": {"ue": {"reasoning": {"max_new_tokens": 40}}},
}
CACHE_AGES = (0, 1, 2)  # in history intervals of 0.5 s (the paper's nuScenes steps)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default="runs/mot_ablation", help="work directory (resumable)")
    parser.add_argument("--variants", default="reference,figure3,reasoning", help=f"from {sorted(VARIANTS)}")
    parser.add_argument("--seeds", default="0", help="training seeds, comma separated")
    parser.add_argument("--scenarios", default="highway,merge,roundabout,intersection")
    parser.add_argument("--train-episodes", type=int, default=12, help="per scenario")
    parser.add_argument("--val-episodes", type=int, default=2, help="per scenario")
    parser.add_argument("--test-episodes", type=int, default=3, help="per scenario (open loop)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--ue-steps", type=int, default=200)
    parser.add_argument("--ae-steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--closed-loop-episodes", type=int, default=2, help="per scenario, test seeds")
    parser.add_argument("--refresh-every", default="1,2,4,8", help="k values for the first variant's DS")
    parser.add_argument("--closed-loop-k", type=int, default=2, help="k for the other variants' DS")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def run(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    _quiet()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = sorted(set(variants) - set(VARIANTS))
    if not variants or bad:
        raise ValueError(f"--variants: expected names from {sorted(VARIANTS)}, got {variants}")
    seeds, ks = _ints(args.seeds), _ints(args.refresh_every)
    if not seeds or not ks or min(ks) < 1 or args.closed_loop_k < 1:
        raise ValueError(f"--seeds / --refresh-every: expected non-empty lists (k >= 1), got {seeds} / {ks}")
    for name in (
        "train_episodes",
        "val_episodes",
        "test_episodes",
        "ue_steps",
        "ae_steps",
        "closed_loop_episodes",
    ):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected an int >= 1, got {getattr(args, name)}")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    start = time.perf_counter()
    _collect_all(work, args, scenarios)

    results: dict = {"variants": {}, "workdir": str(work), "seeds": seeds}
    for vi, variant in enumerate(variants):
        overrides = VARIANTS[variant]
        ue_dir = _pretrain_ue(work, args, overrides)
        per_seed = []
        for seed in seeds:
            policy = _train_ae(work, args, variant, overrides, ue_dir, seed)
            row = {"seed": seed, "open_loop": _open_loop(work, variant, seed, policy)}
            row["closed_loop"] = {
                k: _closed_loop(work, args, scenarios, variant, seed, policy, k)
                for k in (ks if vi == 0 else [args.closed_loop_k])
            }
            if overrides.get("ue", {}).get("reasoning"):
                row["reasoning"] = _reasoning_quality(work, variant, seed, policy)
            per_seed.append(row)
        results["variants"][variant] = {
            "overrides": overrides,
            "seeds": per_seed,
            "summary": _summary(per_seed),
        }
    results["wall_s"] = round(time.perf_counter() - start, 1)
    return results


def _quiet() -> None:
    """No per-fit Lightning banners and no expected warnings in the benchmark's output."""
    import logging
    import warnings

    import lightning.pytorch  # noqa: F401  (sets its loggers to INFO when first imported)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")


# -- data, UE, AE -----------------------------------------------------------------------------------------


def _sensors(args):
    from driving.config import CameraConfig, SensorConfig

    return SensorConfig(camera=CameraConfig(height=args.image_size, width=args.image_size))


def _collect_all(work: Path, args, scenarios: list[str]) -> None:
    from driving.collect import CollectConfig, collect

    plans = {
        "train": ("train", args.train_episodes, 0.0, (1, 2)),
        "val": ("val", args.val_episodes, 0.0, (1, 2)),
        "test": ("test", args.test_episodes, 0.0, (1, 2)),
        # The same test episodes with every sample's UE input 1 (2) history intervals older.
        "test_async1": ("test", args.test_episodes, 1.0, (1,)),
        "test_async2": ("test", args.test_episodes, 1.0, (2,)),
    }
    for name, (split, episodes, fraction, offsets) in plans.items():
        config = CollectConfig(
            scenarios=scenarios,
            episodes=episodes,
            split=split,
            async_fraction=fraction,
            async_offsets=offsets,
            sensors=_sensors(args),
        )
        collect(config, work / "data" / name, workers=1, progress=False)


def _trainer(max_steps: int, ckpt_dir: Path):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    return L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        limit_val_batches=0,
        deterministic=True,
        logger=False,
        callbacks=[
            ModelCheckpoint(
                dirpath=str(ckpt_dir),
                every_n_train_steps=max(1, min(200, max_steps // 4)),
                save_last=True,
                save_top_k=0,
            )
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def _fit(stage, work: Path, args, seed: int, ckpt_dir: Path, steps: int) -> None:
    from driving.datamodule import DrivingDataModule

    dm = DrivingDataModule(
        work / "data" / "train", work / "data" / "val", batch_size=args.batch_size, seed=seed
    )
    last = ckpt_dir / "last.ckpt"
    _trainer(steps, ckpt_dir).fit(
        stage, datamodule=dm, ckpt_path=str(last) if last.exists() else None, weights_only=True
    )


def _pretrain_ue(work: Path, args, overrides: dict) -> Path:
    import lightning as L

    from training.optim import OptimConfig
    from training.stages import UEPretrainStage

    attention = overrides.get("ue", {}).get("image_attention", "bidirectional")
    out = work / f"ue_{attention}"
    if (out / "config.json").exists():
        return out
    L.seed_everything(0, workers=True, verbose=False)
    stage = UEPretrainStage(
        preset="tiny",
        ue={"image_attention": attention},
        optim=OptimConfig(lr=1e-3, warmup_steps=min(20, args.ue_steps)),
        export_dir=str(out),
    )
    _fit(stage, work, args, 0, work / "work" / f"ue_{attention}", args.ue_steps)
    return out


def _train_ae(work: Path, args, variant: str, overrides: dict, ue_dir: Path, seed: int) -> Path:
    import lightning as L

    from training.optim import OptimConfig
    from training.policy import BackboneSpec
    from training.stages import ActionExpertStage

    out = work / f"policy_{variant}_{seed}"
    if (out / "mot_config.json").exists():
        return out
    L.seed_everything(seed, workers=True, verbose=False)
    stage = ActionExpertStage(
        backbone=BackboneSpec(preset="tiny", overrides=overrides, ue_checkpoint=str(ue_dir), seed=seed),
        optim=OptimConfig(lr=args.lr, warmup_steps=50),
        export_dir=str(out),
    )
    _fit(stage, work, args, seed, work / "work" / f"ae_{variant}_{seed}", args.ae_steps)
    return out


# -- evaluation -------------------------------------------------------------------------------------------


def _cached_json(path: Path, compute):
    import json

    from automot.io import write_json_atomic

    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    write_json_atomic(path, value)
    return value


def _open_loop(work: Path, variant: str, seed: int, policy: Path) -> dict:
    def compute() -> dict:
        from training.evaluate import evaluate_open_loop
        from training.policy import load_pretrained

        backbone = load_pretrained(policy)
        names = {0: "test", 1: "test_async1", 2: "test_async2"}
        return {str(age): evaluate_open_loop(backbone, str(work / "data" / names[age])) for age in CACHE_AGES}

    return _cached_json(work / f"open_loop_{variant}_{seed}.json", compute)


def _closed_loop(
    work: Path, args, scenarios: list[str], variant: str, seed: int, policy: Path, k: int
) -> dict:
    def compute() -> dict:
        from driving import EvalConfig, split_seeds
        from mot.runtime import FastSlowPlanner
        from training.evaluate import evaluate_closed_loop
        from training.policy import load_pretrained

        planner = FastSlowPlanner(load_pretrained(policy), refresh_every=k, mode="sync", seed=0)
        start = time.perf_counter()
        summary = evaluate_closed_loop(
            planner,
            scenarios,
            split_seeds("test", args.closed_loop_episodes),
            records_path=work / f"closed_loop_{variant}_{seed}_k{k}.episodes.jsonl",
            eval_config=EvalConfig(sensors=_sensors(args)),
        )
        summary["wall_s"] = round(time.perf_counter() - start, 1)
        return summary

    return _cached_json(work / f"closed_loop_{variant}_{seed}_k{k}.json", compute)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in text.split(" .") if s.strip()]


def _reasoning_quality(work: Path, variant: str, seed: int, policy: Path) -> dict:
    """Generated text vs the world's scene text on the test split (greedy): the share of ground-truth
    sentences reproduced exactly, exact full matches, and one transcript."""

    def compute() -> dict:
        import torch
        from torch.utils.data import DataLoader

        from driving.dataset import DrivingDataset, collate
        from training.policy import load_pretrained

        backbone = load_pretrained(policy)
        loader = DataLoader(DrivingDataset(str(work / "data" / "test")), batch_size=32, collate_fn=collate)
        hits = total = exact = n = 0
        example = None
        refresh_ms = []
        for batch in loader:
            t0 = time.perf_counter()
            with torch.no_grad():
                cache = backbone.prefill(batch.sensors)
            refresh_ms.append((time.perf_counter() - t0) * 1e3 / batch.batch_size)
            for text, truth, prompt in zip(cache.reasoning_text, batch.scene_text, batch.sensors.prompts):
                want, got = _sentences(truth), set(_sentences(text))
                hits += sum(s in got for s in want)
                total += len(want)
                exact += int(_sentences(text) == want)
                n += 1
                if example is None:
                    example = {"prompt": prompt, "generated": text, "scene_text": truth}
        return {
            "samples": n,
            "sentence_recall": hits / max(total, 1),
            "exact_match": exact / max(n, 1),
            "example": example,
            "refresh_ms_per_sample_batched": float(np.median(refresh_ms)),
        }

    return _cached_json(work / f"reasoning_{variant}_{seed}.json", compute)


def _summary(per_seed: list[dict]) -> dict:
    """Means over training seeds: L2 (ST-P3) per horizon and joint decision accuracy per cache age,
    the relative L2 increase of a stale cache, and DS per k."""
    out: dict = {"open_loop": {}, "closed_loop_ds": {}}
    for age in map(str, CACHE_AGES):
        rows = [r["open_loop"][age] for r in per_seed]
        out["open_loop"][age] = {
            key: float(np.mean([r[key] for r in rows]))
            for key in (
                "l2_1s_stp3",
                "l2_2s_stp3",
                "l2_3s_stp3",
                "l2_avg_stp3",
                "acc_joint",
                "acc_longitudinal",
            )
            if key in rows[0]
        }
    base = out["open_loop"]["0"]["l2_avg_stp3"]
    for age in map(str, CACHE_AGES[1:]):
        out["open_loop"][age]["l2_increase_pct"] = 100.0 * (out["open_loop"][age]["l2_avg_stp3"] / base - 1.0)
    for k in per_seed[0]["closed_loop"]:
        out["closed_loop_ds"][str(k)] = float(np.mean([r["closed_loop"][k]["ds"] for r in per_seed]))
    return out
