"""Refinement quality: does the refiner beat the plan it refines on held-out data? (prior vs refined)

`automot bench refine --study DIR` evaluates every refining head of a finished (or partly finished)
study, per training seed, on the study's test split; `--policy DIR --data DIR` evaluates one policy
folder on one data folder. Per policy: prior vs refined L2 per horizon (ST-P3 and UniAD), route L1 and
collision rate for 1/2/5 steps, K candidates with the configured selection and the best-of-K oracle,
and Mixture-of-Attention knockouts (see `training.refine_eval`). The headline is `ratio` =
refined / prior L2 avg (ST-P3) at the head's defaults, per training seed and its mean.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", type=Path, default=None, help="a study folder (every refining head, seed)")
    parser.add_argument("--policy", type=Path, default=None, help="one policy folder (instead of --study)")
    parser.add_argument("--data", type=Path, default=None, help="the data folder for --policy")
    parser.add_argument("--sampling-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 5], help="reverse step counts")
    parser.add_argument("--candidates", type=int, nargs="+", default=[8], help="K values besides 1")
    parser.add_argument("--no-knockouts", action="store_true", help="skip the MoA knockouts")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")


def _policies(args: argparse.Namespace) -> list[tuple[str, int | None, Path, Path]]:
    """(head label, training seed, policy folder, test data folder) to evaluate."""
    if (args.study is None) == (args.policy is None):
        raise ValueError(
            "--study / --policy: expected exactly one of them, got " + ("both" if args.study else "neither")
        )
    if args.policy is not None:
        if args.data is None:
            raise ValueError("--data: expected a data folder with --policy, got none")
        return [("policy", None, args.policy, args.data)]
    import json

    from automot.config import build_config
    from studies.config import StudyConfig
    from studies.tasks import data_dir, policy_dir

    stored = args.study / "study.json"
    if not stored.exists():
        raise ValueError(f"--study: expected a study folder with study.json, got {args.study}")
    config = build_config(StudyConfig, json.loads(stored.read_text()))
    found = []
    for head in config.heads:
        if head.key == "mlp":
            continue
        for seed in config.training_seeds:
            folder = policy_dir(args.study, seed, head.key)
            if (folder / "mot_config.json").exists():
                found.append((head.key, seed, folder, data_dir(args.study, "test")))
    if not found:
        raise ValueError(
            f"--study: expected trained refining-head policies under {args.study}/seeds, found none"
        )
    return found


def run(args: argparse.Namespace) -> dict:
    import torch

    from training.policy import load_pretrained
    from training.refine_eval import evaluate_refinement

    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for head, seed, policy, data in _policies(args):
        r = evaluate_refinement(
            load_pretrained(policy),
            str(data),
            sampling_seed=args.sampling_seed,
            steps=tuple(args.steps),
            candidates=tuple(args.candidates),
            knockouts=not args.no_knockouts,
        )
        results.append({"head": head, "training_seed": seed, "policy": str(policy), **r})
    by_head: dict[str, list[float]] = {}
    for r in results:
        by_head.setdefault(r["head"], []).append(r["ratio"])
    return {
        "ratio_by_head": {
            h: {"mean": sum(v) / len(v), "max": max(v), "per_seed": v} for h, v in by_head.items()
        },
        "runs": results,
    }
