"""`automot study`: a multi-seed variance study; `automot demo`: the README's main job (a small study).

automot study --profile demo --out runs/demo [--workers 2] [--json]
automot study --config my_study.yaml --out runs/mine --training-seeds 0 1 2 3 4 --sampling-seeds 0 1 2
automot study --profile full --out runs/full --executor submitit-slurm --slurm partition=gpu
"""

from __future__ import annotations

import argparse
import os

from automot.cli import positive_int


def _add_study_arguments(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument("--profile", default="demo", help="starting point: demo (default), full, smoke")
    parser.add_argument(
        "--config", default=None, help="YAML/JSON file of study fields (overrides the profile)"
    )
    parser.add_argument("--out", default=default_out, help="study folder (resumes if it exists)")
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=min(8, os.cpu_count() or 1),
        help="parallel worker processes (default: cores, at most 8)",
    )
    parser.add_argument("--executor", default="local", choices=("local", "submitit-local", "submitit-slurm"))
    parser.add_argument(
        "--slurm", nargs="*", default=[], metavar="KEY=VALUE", help="submitit slurm_* parameters"
    )
    parser.add_argument("--training-seeds", type=int, nargs="+", default=None)
    parser.add_argument("--sampling-seeds", type=int, nargs="+", default=None)
    parser.add_argument(
        "--episodes", type=positive_int, default=None, help="closed-loop episodes per scenario"
    )
    parser.add_argument("--scenarios", nargs="+", default=None)
    parser.add_argument(
        "--json", action="store_true", help="print the summary path and headline numbers as JSON"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="continue a study folder started with another config: finished data tasks are kept, other "
        "outputs are moved to superseded/ (never deleted)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    study = subparsers.add_parser(
        "study", help="multi-seed variance study of planning heads (MLP vs diffusion)"
    )
    _add_study_arguments(study, "runs/study")
    study.set_defaults(func=run)
    demo = subparsers.add_parser(
        "demo", help="the main job: a small study on the embedded world, then its table"
    )
    _add_study_arguments(demo, "runs/demo")
    demo.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> dict:
    over: dict = {}
    if args.training_seeds is not None:
        over["training_seeds"] = args.training_seeds
    if args.sampling_seeds is not None:
        over["sampling_seeds"] = args.sampling_seeds
    if args.episodes is not None:
        over["eval"] = {"episodes": args.episodes}
    if args.scenarios is not None:
        over["data"] = {"scenarios": args.scenarios}
    return over


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from studies.report import format_headline
    from studies.runner import load_or_build_config, run_study

    slurm = {}
    for item in args.slurm:
        if "=" not in item:
            raise ValueError(f"--slurm: expected KEY=VALUE items, got {item!r}")
        k, v = item.split("=", 1)
        slurm[k] = v
    if args.workers < 1:
        raise ValueError(f"--workers: expected an int >= 1, got {args.workers}")
    config = load_or_build_config(args.profile, args.config, _overrides(args))
    start = time.perf_counter()
    result = run_study(
        args.out,
        config,
        workers=args.workers,
        executor=args.executor,
        slurm=slurm,
        progress=None if args.json else print,
        force=args.force,
        imports=args.plugin_modules or [],
    )
    wall = time.perf_counter() - start
    if args.json:
        print(
            json.dumps(
                {
                    "summary": str(result.summary_path),
                    "report": str(result.report_path),
                    "wall_s": round(wall, 1),
                    "headline": result.summary["headline"],
                },
                sort_keys=True,
            )
        )
        return 0
    print()
    print(format_headline(result.summary))
    print()
    print(f"report:  {result.report_path}")
    print(f"summary: {result.summary_path}")
    print(
        f"plots:   {', '.join(str(result.study_dir / p) for p in ('ds_by_head.png', 'l2_by_horizon.png', 'trajectories.png'))}"
    )
    print(f"wall time {wall / 60:.1f} min")
    return 0
