"""`automot demo`: the main job on the embedded default.

Trains an MLP head and a diffusion head (built around the trained MLP head) on the synthetic
trajectory task and prints their open-loop L2 side by side.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="train MLP and diffusion heads on the synthetic task, print L2"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="training wall time per head")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from training.synthetic import compare_heads, format_table

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    print(
        f"Training an MLP head, then a diffusion head around it, {args.seconds:.0f} s each (synthetic task) ..."
    )
    print(format_table(compare_heads(args.seconds, args.seed)))
    return 0
