"""`automot fit` (LightningCLI over the training stages) and `automot eval` (open and closed loop).

    automot fit --config configs/tiny/ae.yaml [--model.init_args.head=diffusion] [--trainer.max_steps=50]
    automot eval --policy runs/tiny/policy_mlp --data data/tiny/test [--closed-loop --episodes 3] [--json]

`fit` hands every argument after the subcommand to Lightning's CLI (YAML with `class_path` /
`init_args`, `--print_config`, `--ckpt_path` to resume). Lightning checkpoints are always read with
`weights_only=True` (no unpickling).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    fit = subparsers.add_parser(
        "fit",
        help="train a stage from a YAML config (Lightning CLI; `automot fit --help` for its options)",
        add_help=False,
    )
    fit.set_defaults(func=run_fit, passthrough=True)


def run_fit(args: argparse.Namespace) -> int:
    from training.lightning_cli import run_lightning_cli

    run_lightning_cli(["fit", "--weights_only=true", *args.extra])
    return 0
