"""`automot study`: a multi-seed variance study; `automot demo`: the README's main job (a small study).

automot study --profile demo --out runs/demo [--workers 2] [--json]
automot study --config my_study.yaml --out runs/mine --training-seeds 0 1 2 3 4 --sampling-seeds 0 1 2
automot study --profile full --out runs/full --executor submitit-slurm --slurm partition=gpu
automot study plan --from runs/demo --detect 2.0     # seeds x episodes needed to detect a DS difference of 2
"""

from __future__ import annotations

import argparse
import os

from automot.cli import positive_int


def _add_study_arguments(parser: argparse.ArgumentParser, default_out: str) -> None:
    from studies.config import PROFILES

    others = ", ".join(n for n in PROFILES.names() if n != "demo")
    parser.add_argument("--profile", default="demo", help=f"starting point: demo (default), {others}")
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
        "--progress",
        default="auto",
        choices=("auto", "live", "lines", "none"),
        help="live table (terminal), a line at most every --progress-every seconds, or nothing; "
        "auto: live in a terminal, lines otherwise",
    )
    parser.add_argument(
        "--progress-every", type=float, default=30.0, help="seconds between progress lines (default 30)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="continue a study folder started with another config: finished data tasks are kept, other "
        "outputs are moved to superseded/ (never deleted). Not needed to append training or sampling seeds",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    study = subparsers.add_parser(
        "study", help="multi-seed variance study of planning heads (MLP vs diffusion)"
    )
    _add_study_arguments(study, "runs/study")
    study.set_defaults(func=run)
    from studies.plan import add_plan_parser

    add_plan_parser(study.add_subparsers(dest="study_command", metavar="{plan}"))
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
    import sys
    import time

    from studies.report import PLOTS, format_headline, format_power, format_robust
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
    if args.progress_every < 0:
        raise ValueError(f"--progress-every: expected seconds >= 0, got {args.progress_every}")
    mode = args.progress
    if mode == "auto":
        mode = "live" if sys.stdout.isatty() and not args.json else "lines"
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.json else print
    progress = {"live": "live", "lines": say, "none": None}[mode]
    start = time.perf_counter()
    result = run_study(
        args.out,
        config,
        workers=args.workers,
        executor=args.executor,
        slurm=slurm,
        progress=progress,
        progress_every=args.progress_every,
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
    if config.latent is not None:
        from studies.latent_report import format_latent_headline

        print(format_latent_headline(result.summary))
        plots = ("data_efficiency.png",)
    else:
        print(format_headline(result.summary))
        plots = PLOTS
    print()
    for line in [*format_robust(result.summary), "", *format_power(result.summary)]:
        print(line)
    print()
    print(f"report:  {result.report_path}")
    print(f"summary: {result.summary_path}")
    print(
        f"plots:   {', '.join(str(result.study_dir / p) for p in plots if (result.study_dir / p).exists())}"
    )
    print(f"wall time {wall / 60:.1f} min")
    return 0
