"""Subcommands of the embedded driving world: `automot expert`, `automot drive`, `automot collect`, `automot viz`.

automot expert --scenario roundabout intersection --episodes 20 --split test --json
automot drive --policy constant_velocity --scenario highway --episodes 5 --gif runs/gifs
automot collect --scenarios highway merge --episodes 10 --out data/train --workers 2
automot viz --data data/train --index 0 --out sample.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from automot.cli import positive_float, positive_int

ALL_SCENARIOS = ("highway", "merge", "roundabout", "intersection")


def register(subparsers: argparse._SubParsersAction) -> None:
    expert = subparsers.add_parser(
        "expert", help="score the rule-based expert in closed loop (route completion, collisions, success)"
    )
    _closed_loop_args(expert)
    expert.set_defaults(func=_run_expert, policy="expert")

    drive = subparsers.add_parser(
        "drive", help="score a built-in policy (expert or constant_velocity) in closed loop"
    )
    drive.add_argument("--policy", choices=("expert", "constant_velocity"), default="constant_velocity")
    _closed_loop_args(drive)
    drive.set_defaults(func=_run_expert)

    collect = subparsers.add_parser("collect", help="run the expert and write a labelled dataset (resumable)")
    collect.add_argument("--scenarios", nargs="+", default=list(ALL_SCENARIOS), metavar="NAME")
    collect.add_argument("--episodes", type=positive_int, default=4, help="episodes per scenario")
    collect.add_argument("--split", choices=("train", "val", "test"), default="train")
    collect.add_argument("--seed-start", type=int, default=0, help="first seed offset inside the split")
    collect.add_argument("--out", required=True, help="dataset directory (index.json + shards/)")
    collect.add_argument("--workers", type=positive_int, default=1)
    collect.add_argument("--sample-every", type=positive_int, default=1, help="policy steps between samples")
    collect.add_argument(
        "--async-fraction", type=float, default=0.0, help="share of NuSync-style asynchronous samples"
    )
    collect.add_argument("--image-size", type=positive_int, default=64, help="camera height = width [px]")
    collect.add_argument(
        "--turn-signals",
        action="store_true",
        help="other vehicles show blinkers in the BEV before they turn (driving.signals)",
    )
    collect.add_argument(
        "--vehicle-trail",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="other vehicles' motion trails in the BEV over the last SECONDS (BEVConfig.vehicle_trail_s)",
    )
    collect.add_argument(
        "--density", type=positive_float, default=None, help="traffic density multiplier for every scenario"
    )
    collect.add_argument(
        "--duration", type=positive_float, default=None, help="time limit [s] for every scenario"
    )
    collect.add_argument(
        "--unlabeled", action="store_true", help="write observations only (no expert labels)"
    )
    collect.add_argument("--json", action="store_true", help="print a JSON summary")
    collect.set_defaults(func=_run_collect)

    viz = subparsers.add_parser("viz", help="save a PNG of one dataset sample")
    viz.add_argument("--data", required=True, help="dataset directory")
    viz.add_argument("--index", type=int, default=0, help="sample index")
    viz.add_argument("--out", required=True, help="PNG path")
    viz.set_defaults(func=_run_viz)


def _closed_loop_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", nargs="+", default=list(ALL_SCENARIOS), metavar="NAME")
    parser.add_argument("--episodes", type=positive_int, default=20, help="episodes per scenario")
    parser.add_argument("--split", choices=("train", "val", "test"), default="test")
    parser.add_argument("--seed-start", type=int, default=0)
    parser.add_argument("--workers", type=positive_int, default=1)
    parser.add_argument("--density", type=positive_float, default=None)
    parser.add_argument("--duration", type=positive_float, default=None)
    parser.add_argument("--records", default=None, help="JSON-lines file of episode records (resumes)")
    parser.add_argument(
        "--gif", default=None, metavar="DIR", help="save a GIF of every episode (single process)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _overrides(args) -> dict:
    out = {}
    if args.density is not None:
        out["density"] = args.density
    if args.duration is not None:
        out["duration_s"] = args.duration
    return out


def _check_common(args) -> None:
    """Values argparse's types let through but the job cannot use: named, expected, received."""
    if getattr(args, "workers", 1) < 1:
        raise ValueError(f"--workers: expected an int >= 1, got {args.workers}")
    if getattr(args, "episodes", 1) < 1:
        raise ValueError(f"--episodes: expected an int >= 1, got {args.episodes}")
    records = getattr(args, "records", None)
    if records is not None and Path(records).is_dir():
        raise ValueError(
            f"--records: expected a JSON-lines file (created if missing), got the folder {records}"
        )
    for name in ("density", "duration"):
        value = getattr(args, name, None)
        if value is not None and not value > 0:
            raise ValueError(f"--{name}: expected a number > 0, got {value}")


def _run_expert(args) -> int:
    import time

    from driving.baselines import build_policy
    from driving.closed_loop import EvalConfig, evaluate, record_gifs
    from driving.scenarios import build_scenario, split_seeds
    from driving.scoring import summarize

    _check_common(args)
    start = time.perf_counter()
    seeds = split_seeds(args.split, args.episodes, args.seed_start)
    policy = build_policy(args.policy)
    records = []
    for name in args.scenario:
        scenario = build_scenario(name, **_overrides(args))
        if args.gif:
            records += record_gifs(policy, scenario, seeds, args.gif, records_path=args.records)
        else:
            config = EvalConfig(workers=args.workers)
            records += evaluate(
                policy, scenario, seeds, config, records_path=args.records, progress=not args.json
            )
    summary = summarize(records)
    out = {
        "policy": args.policy,
        "split": args.split,
        "episodes_per_scenario": args.episodes,
        "seconds": round(time.perf_counter() - start, 1),
        "overall": {k: v for k, v in summary.items() if k != "per_scenario"},
        **{name: block for name, block in summary["per_scenario"].items()},
    }
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print(f"{'scenario':<14}{'success':>9}{'RC %':>8}{'collide':>9}{'DS':>8}{'episodes':>10}")
        for name in [*args.scenario, "overall"]:
            b = out[name]
            print(
                f"{name:<14}{b['success_rate']:>9.2f}{b['route_completion']:>8.1f}{b['collision_rate']:>9.2f}{b['ds']:>8.1f}{b['episodes']:>10}"
            )
        print(f"({out['seconds']} s)")
    return 0


def _run_collect(args) -> int:
    import time

    from driving.collect import CollectConfig, collect
    from driving.config import BEVConfig, CameraConfig, SensorConfig

    _check_common(args)
    if args.image_size < 8:
        raise ValueError(f"--image-size: expected an int >= 8 (pixels), got {args.image_size}")
    overrides = _overrides(args)
    config = CollectConfig(
        scenarios=args.scenarios,
        episodes=args.episodes,
        split=args.split,
        seed_start=args.seed_start,
        sample_every=args.sample_every,
        async_fraction=args.async_fraction,
        scenario_overrides={name: dict(overrides) for name in args.scenarios} if overrides else {},
        labeled=not args.unlabeled,
        sensors=SensorConfig(
            camera=CameraConfig(height=args.image_size, width=args.image_size),
            bev=BEVConfig(turn_signals=args.turn_signals, vehicle_trail_s=args.vehicle_trail),
        ),
    )
    start = time.perf_counter()
    index = collect(config, args.out, workers=args.workers, progress=True)
    seconds = time.perf_counter() - start
    summary = {
        "out": args.out,
        "episodes": len(index["episodes"]),
        "samples": index["num_samples"],
        "seconds": round(seconds, 1),
        "samples_per_s": round(index["num_samples"] / max(seconds, 1e-9), 1),
        "outcomes": {
            o: sum(e["outcome"] == o for e in index["episodes"])
            for o in sorted({e["outcome"] for e in index["episodes"]})
        },
    }
    print(
        json.dumps(summary, sort_keys=True)
        if args.json
        else "\n".join(f"{k}: {v}" for k, v in summary.items())
    )
    return 0


def _run_viz(args) -> int:
    from driving.dataset import DrivingDataset, read_index
    from driving.viz import plot_sample

    if Path(args.out).is_dir():
        raise ValueError(f"--out: expected a PNG file path, got the folder {args.out}")
    dataset = DrivingDataset(args.data)
    bev = read_index(args.data)["config"]["sensors"]["bev"]
    if not 0 <= args.index < len(dataset):
        raise ValueError(f"--index: expected 0 <= index < {len(dataset)}, got {args.index}")
    path = plot_sample(
        dataset[args.index], args.out, bev_extent=(bev["ahead_m"], bev["behind_m"], bev["side_m"])
    )
    print(path)
    return 0
