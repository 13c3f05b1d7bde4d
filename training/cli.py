"""`automot fit` (LightningCLI over the training stages) and `automot eval` (open and closed loop).

    automot fit --config configs/tiny/ae.yaml [--model.init_args.head=diffusion] [--trainer.max_steps=50]
    automot eval --ckpt runs/tiny/policy_mlp --data data/tiny --split test [--closed-loop --episodes 3] [--json]
    automot eval --baseline expert --closed-loop --split test --episodes 3   # or constant_velocity

`fit` hands every argument after the subcommand to Lightning's CLI (YAML with `class_path` /
`init_args`, `--print_config`, `--ckpt_path` to resume). Lightning checkpoints are always read with
`weights_only=True` (no unpickling).
"""

from __future__ import annotations

import argparse

from automot.cli import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    fit = subparsers.add_parser(
        "fit",
        help="train a stage from a YAML config (Lightning CLI; `automot fit --help` for its options)",
        add_help=False,
    )
    fit.set_defaults(func=run_fit, passthrough=True)

    ev = subparsers.add_parser("eval", help="open-loop (and closed-loop) metrics of a trained policy folder")
    ev.add_argument(
        "--ckpt", default=None, help="policy or student folder (a stage's export_dir: safetensors + JSON)"
    )
    ev.add_argument(
        "--baseline",
        default=None,
        type=_baseline_name,
        metavar="{expert,constant_velocity}",
        help="evaluate a reference policy instead of --ckpt (closed loop; constant velocity also open loop)",
    )
    ev.add_argument("--data", default=None, help="dataset root with train/ val/ test/ folders (open loop)")
    ev.add_argument("--split", default="test", choices=("train", "val", "test"))
    ev.add_argument(
        "--head",
        default=None,
        help="evaluate with this head instead (e.g. mlp for a diffusion policy's prior)",
    )
    ev.add_argument("--sampling-seed", type=int, default=0, help="seed of the diffusion head's noise")
    ev.add_argument(
        "--closed-loop", action="store_true", help="also drive the world's scenarios (split seeds)"
    )
    ev.add_argument("--scenarios", nargs="+", default=None, help="closed-loop scenarios (default: all)")
    ev.add_argument("--episodes", type=positive_int, default=5, help="closed-loop episodes per scenario")
    ev.add_argument(
        "--refresh-every", type=positive_int, default=2, help="UE cache refresh period k in steps"
    )
    ev.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        help="closed-loop camera height = width [px] (default: the size the policy was trained with)",
    )
    ev.add_argument("--records", default=None, help="JSON-lines file for closed-loop episodes (resumes)")
    ev.add_argument(
        "--shadow-expert",
        action="store_true",
        help="closed loop: also ask the expert at every state the policy reaches and record where the two plans "
        "part (driving.shadow; per-step traces in --records, which it needs)",
    )
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument(
        "--progress-every",
        type=float,
        default=30.0,
        help="closed loop without a terminal: a progress line (stderr) at most every this many seconds",
    )
    ev.set_defaults(func=run_eval)

    from training.dagger import register_cli as register_dagger

    register_dagger(subparsers)


def _baseline_name(text: str) -> str:
    """argparse type: a reference policy's name (`driving.baselines.POLICIES`)."""
    from driving.baselines import POLICIES

    if text not in POLICIES:
        raise argparse.ArgumentTypeError(f"expected one of {sorted(POLICIES)}, got {text!r}")
    return text


def run_fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from training.lightning_cli import run_lightning_cli

    for i, arg in enumerate(args.extra):  # a missing config file, named before Lightning starts
        path = arg.split("=", 1)[1] if arg.startswith("--config=") else None
        if arg in ("--config", "-c") and i + 1 < len(args.extra):
            path = args.extra[i + 1]
        if path is not None and not Path(path).is_file():
            raise ValueError(f"--config: expected an existing YAML config file, got {path}")

    run_lightning_cli(["fit", "--weights_only=true", *args.extra])
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch

    from training.evaluate import evaluate_closed_loop, evaluate_open_loop
    from training.policy import load_pretrained, with_head

    if (args.ckpt is None) == (args.baseline is None):
        raise ValueError(
            f"--ckpt / --baseline: expected exactly one of them, got --ckpt {args.ckpt} and --baseline "
            f"{args.baseline}"
        )
    if args.data is not None and not (Path(args.data) / args.split).is_dir():
        raise ValueError(
            f"--data: expected a dataset root holding a {args.split}/ folder (automot collect --out ROOT/{args.split}), "
            f"got {args.data}"
        )
    if args.records is not None and Path(args.records).is_dir():
        raise ValueError(
            f"--records: expected a JSON-lines file (created if missing), got the folder {args.records}"
        )
    if args.baseline is not None:
        return _eval_baseline(args)
    ckpt = Path(args.ckpt)
    if ckpt.is_file():
        raise ValueError(
            f"--ckpt: expected a policy folder (a stage's export_dir), got the file {ckpt}; "
            "Lightning .ckpt files are for resuming training (automot fit --ckpt_path)"
        )
    if args.data is None and not args.closed_loop:
        raise ValueError(
            "--data: expected a dataset root for open-loop metrics (or pass --closed-loop), got none"
        )
    if args.shadow_expert and (args.records is None or not args.closed_loop):
        raise ValueError(
            "--shadow-expert: expected --closed-loop and --records FILE (the per-step traces go there), got "
            f"closed_loop={args.closed_loop}, records={args.records}"
        )
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    from training.policies import policy_kind

    if (ckpt / "student_config.json").exists() and policy_kind(ckpt) == "student":
        return _eval_student(args, ckpt)
    backbone = load_pretrained(ckpt)
    if args.head is not None:
        with_head(backbone.ae, args.head)
    result: dict = {"policy": str(ckpt), "head": backbone.ae.config.head, "sampling_seed": args.sampling_seed}
    if args.data is not None:
        data_dir = Path(args.data) / args.split
        result["open_loop"] = evaluate_open_loop(backbone, str(data_dir), sampling_seed=args.sampling_seed)
    if args.closed_loop:
        from automot.progress import Progress
        from driving import available_scenarios, split_seeds
        from mot.runtime import FastSlowPlanner

        planner = FastSlowPlanner(backbone, refresh_every=args.refresh_every, seed=args.sampling_seed)
        if args.shadow_expert:
            from driving.shadow import ExpertShadow

            planner = ExpertShadow(planner)
        scenarios = args.scenarios or available_scenarios()
        seeds = split_seeds(args.split, args.episodes)
        resumed = 0
        if args.records is not None and Path(args.records).exists():
            from automot.io import read_jsonl

            wanted = {(str(s), int(e)) for s in scenarios for e in seeds}
            resumed = len({(r["scenario"], r["seed"]) for r in read_jsonl(args.records)} & wanted)
        bar = Progress(
            len(scenarios) * len(seeds),
            desc="closed loop",
            unit="episode",
            every_s=args.progress_every,
            initial=resumed,
        )

        def on_episode(record) -> None:
            bar.advance(
                1,
                note=f"last: {record.scenario} seed {record.seed} {record.outcome}, score {record.score:.1f}",
            )

        try:
            result["closed_loop"] = evaluate_closed_loop(
                planner,
                scenarios,
                seeds,
                records_path=args.records,
                eval_config=_eval_config(backbone, args.image_size),
                on_episode=on_episode,
            )
        finally:
            bar.close()
        if args.shadow_expert:
            from automot.io import read_jsonl
            from driving.shadow import shadow_table

            wanted = {(str(s), int(e)) for s in scenarios for e in seeds}
            rows = [r for r in read_jsonl(args.records) if (r["scenario"], r["seed"]) in wanted]
            result["closed_loop"]["shadow"] = shadow_table(rows)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        _print_eval(result)
    return 0


def _eval_baseline(args: argparse.Namespace) -> int:
    """A reference policy (`driving.baselines.POLICIES`) on the same scenarios, seeds and metrics
    (`--data` and `--records` are checked by `run_eval` for both kinds)."""
    import json
    from pathlib import Path

    from driving import available_scenarios, split_seeds
    from driving.baselines import build_policy
    from training.evaluate import constant_velocity_open_loop, evaluate_closed_loop

    if args.head is not None or args.shadow_expert:
        flag = "--head" if args.head is not None else "--shadow-expert"
        raise ValueError(
            f"{flag}: expected none with --baseline (a baseline has no head and no shadow), got {flag} "
            f"with --baseline {args.baseline}"
        )
    if args.data is not None and args.baseline == "expert":
        raise ValueError(
            "--data: the expert's plan is the dataset's label (open-loop L2 0 by construction): expected no "
            f"--data with --baseline expert, got {args.data}"
        )
    if args.data is None and not args.closed_loop:
        raise ValueError(
            "--closed-loop: expected it (or --data for constant velocity's open loop), got neither"
        )
    result: dict = {"policy": args.baseline, "head": None, "sampling_seed": None}
    if args.data is not None:
        result["open_loop"] = constant_velocity_open_loop(str(Path(args.data) / args.split))
    if args.closed_loop:
        scenarios = args.scenarios or available_scenarios()
        seeds = split_seeds(args.split, args.episodes)
        result["closed_loop"] = evaluate_closed_loop(
            build_policy(args.baseline), scenarios, seeds, records_path=args.records
        )
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        _print_eval(result)
    return 0


def _eval_student(args: argparse.Namespace, ckpt) -> int:
    """The distilled student (a folder with student_config.json): the same metrics, run alone."""
    import json
    from pathlib import Path

    from training.evaluate import evaluate_closed_loop, evaluate_student_open_loop
    from training.policies import load_policy

    if args.head is not None:
        raise ValueError(f"--head: a student folder has its own decoder, got --head {args.head}")
    policy = load_policy(ckpt)
    result: dict = {"policy": str(ckpt), "head": "student", "sampling_seed": args.sampling_seed}
    if args.data is not None:
        result["open_loop"] = evaluate_student_open_loop(policy.student, str(Path(args.data) / args.split))
    if args.closed_loop:
        from driving import available_scenarios, split_seeds

        scenarios = args.scenarios or available_scenarios()
        seeds = split_seeds(args.split, args.episodes)
        result["closed_loop"] = evaluate_closed_loop(policy, scenarios, seeds, records_path=args.records)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        _print_eval(result)
    return 0


def _eval_config(backbone, image_size: int | None = None):
    """The world's sensors as the policy was trained with them (camera and RGB history sizes, the
    BEV's blinkers); `image_size` overrides the camera's height = width."""
    from driving import EvalConfig
    from driving.config import BEVConfig, CameraConfig, SensorConfig

    shapes = backbone.ae.input_shapes
    if not shapes:
        if image_size is None:
            return EvalConfig()
        return EvalConfig(sensors=SensorConfig(camera=CameraConfig(height=image_size, width=image_size)))
    _, height, width = shapes["rgb"]
    if image_size is not None:
        height = width = image_size
    camera = CameraConfig(height=height, width=width)
    bev = BEVConfig.from_options(backbone.ae.sensor_options)
    return EvalConfig(sensors=SensorConfig(camera=camera, bev=bev, history_frames=shapes["rgb_history"][0]))


def _print_eval(result: dict) -> None:
    if result["head"] is None:  # a baseline
        print(f"baseline {result['policy']}")
    else:
        print(f"policy {result['policy']} (head {result['head']}, sampling seed {result['sampling_seed']})")
    ol = result.get("open_loop")
    if ol:
        for p in ("stp3", "uniad"):
            print(
                f"  open loop [{p}]  L2 1s/2s/3s/avg {ol[f'l2_1s_{p}']:.3f} {ol[f'l2_2s_{p}']:.3f} {ol[f'l2_3s_{p}']:.3f} "
                f"{ol[f'l2_avg_{p}']:.3f} m   collision avg {100 * ol[f'collision_avg_{p}']:.2f} %"
            )
        acc = [
            f"{k[4:]} {100 * v:.1f}%"
            for k, v in ol.items()
            if k in ("acc_lateral", "acc_longitudinal", "acc_joint")
        ]
        if acc:  # a baseline has no decisions
            print("  decisions  " + ", ".join(acc))
    cl = result.get("closed_loop")
    if cl:
        print(
            f"  closed loop  DS {cl['ds']:.2f}  SR {cl['sr']:.1f}%  RC {cl['route_completion']:.1f}%  ({cl['episodes']} episodes)"
        )
        for name, block in cl["per_scenario"].items():
            print(
                f"    {name:<13} DS {block['ds']:6.2f}  SR {block['sr']:5.1f}%  RC {block['route_completion']:5.1f}%"
            )
        for name, block in cl.get("shadow", {}).items():
            first = block["first_divergence_s_median"]
            print(
                f"    shadow {name:<13} speed gap {block['speed_gap_mean']:+.2f} m/s  lateral gap "
                f"{block['lateral_gap_mean']:.2f} m  plan L2 {block['plan_l2_mean']:.2f} m  diverged "
                f"{block['diverged']}/{block['episodes']}"
                + ("" if first is None else f" (median at {first:.1f} s)")
            )
            if block.get("speed_change_sd") is not None:
                print(
                    f"    shadow {name:<13} planned speed change sd {block['speed_change_sd']:.2f} m/s "
                    f"(expert {block['expert_speed_change_sd']:.2f})"
                )
