"""`automot bench NAME [--json]`: speed benchmarks, each in the module named in `BENCHMARKS`.

A benchmark module exposes `add_arguments(parser)` and `run(args) -> dict`. The dict is printed as
one JSON object with `--json`, or as aligned `key: value` lines otherwise. Every result carries the
machine description and the date, so BENCHMARKS.md can quote it as measured.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform

BENCHMARKS: dict[str, str] = {
    "refiner": "refiner.bench",
    "async": "mot.bench",
    "train": "training.bench",
    "mot-ablation": "studies.mot_ablation",
    "latent": "latent.bench",
    "refine": "studies.refine_bench",
}


def machine_info() -> dict[str, object]:
    import torch

    return {
        "date": datetime.date.today().isoformat(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="run a speed benchmark and print its numbers")
    benches = parser.add_subparsers(dest="bench", required=True, metavar="NAME")
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        sub = benches.add_parser(name, help=(module.__doc__ or name).strip().splitlines()[0])
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        module.add_arguments(sub)
        sub.set_defaults(func=_runner(module))


def _runner(module):
    def run(args: argparse.Namespace) -> int:
        result = {"benchmark": args.bench, **module.run(args), "machine": machine_info()}
        if args.json:
            print(json.dumps(result, sort_keys=True))
        else:
            for key, value in result.items():
                print(f"{key:>16}: {value}")
        return 0

    return run
