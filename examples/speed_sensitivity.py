"""How much does a policy's plan follow its ego-speed input? Raise the speed the policy is told
(`ego_state`'s speed, and with `--history` the speeds of the ego history too) by `--delta` m/s on
every sample of a dataset and measure how far the plan's 1 s and 3 s waypoints move along their
path. A planner that keeps its speed would move them by delta x 1 s and delta x 3 s; a plan that
ignores the input does not move them at all.

docs/latent.md uses it to show that latent-action pretraining leaves the action expert deaf to its
speed input when labels are scarce (the plan's error is then longitudinal):

    python examples/speed_sensitivity.py --data runs/latent/data/test \\
        --policy runs/latent/seeds/0/latent_scratch_10 --policy runs/latent/seeds/0/latent_pretrained_10
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

import torch

from automot import spec
from automot.types import SensorBatch
from driving.dataset import DrivingDataset, collate

SPEED = spec.EGO_STATE_FIELDS.index("speed")
HISTORY_SPEED = spec.HISTORY_FIELDS.index("speed")
ONE_S = spec.waypoint_times_s().index(1.0)


def with_speed_offset(sensors: SensorBatch, delta: float, history: bool) -> SensorBatch:
    """`sensors` with `delta` m/s added to the ego speed (and to the history's speeds)."""
    ego_state = sensors.ego_state.clone()
    ego_state[:, SPEED] += delta
    ego_history = sensors.ego_history.clone()
    if history:
        ego_history[..., HISTORY_SPEED] += delta
    return dataclasses.replace(sensors, ego_state=ego_state, ego_history=ego_history)


def _distances(waypoints: torch.Tensor) -> torch.Tensor:
    """(B, Nw, 2) -> (B, Nw) path length from the ego to each waypoint."""
    steps = torch.diff(waypoints, dim=1, prepend=torch.zeros_like(waypoints[:, :1]))
    return steps.norm(dim=-1).cumsum(dim=1)


def speed_sensitivity(
    plan: Callable[[SensorBatch], torch.Tensor],
    dataset: DrivingDataset,
    delta: float,
    *,
    history: bool = False,
    batch_size: int = 64,
) -> dict:
    """`plan(sensors) -> waypoints (B, Nw, 2)`; returns the mean move of the 1 s and 3 s waypoints'
    path distance (m) when the speed input is raised by `delta`, and the same per m/s of `delta`."""
    if delta == 0:
        raise ValueError("--delta: expected a speed offset != 0 m/s, got 0")
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    moved = []
    with torch.no_grad():
        for batch in loader:
            base = _distances(plan(batch.sensors))
            raised = _distances(plan(with_speed_offset(batch.sensors, delta, history)))
            moved.append(raised - base)
    d = torch.cat(moved)  # (N, Nw)
    d1, d3 = float(d[:, ONE_S].mean()), float(d[:, -1].mean())
    return {
        "samples": int(d.shape[0]),
        "delta_m_s": delta,
        "moved_1s_m": d1,
        "moved_3s_m": d3,
        "per_m_s_1s": d1 / delta,  # 1.0 for a planner that keeps the speed it is told
        "per_m_s_3s": d3 / delta,  # 3.0 for it
    }


def policy_plan(directory: str, sampling_seed: int = 0) -> Callable[[SensorBatch], torch.Tensor]:
    """A policy folder's plan function (the same generator seed for every call)."""
    from training.policy import load_pretrained

    backbone = load_pretrained(directory)
    backbone.ae.eval()

    def plan(sensors: SensorBatch) -> torch.Tensor:
        return backbone(sensors, generator=torch.Generator().manual_seed(sampling_seed)).plan.waypoints

    return plan


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", action="append", required=True, help="a policy folder (repeatable)")
    parser.add_argument("--data", required=True, help="a dataset folder (e.g. a study's data/test)")
    parser.add_argument("--scenario", action="append", help="only this scenario (repeatable); default all")
    parser.add_argument("--delta", type=float, default=2.0, help="speed offset, m/s")
    parser.add_argument("--history", action="store_true", help="raise the ego history's speeds too")
    parser.add_argument("--sampling-seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.delta == 0:
        parser.error("--delta: expected a speed offset != 0 m/s, got 0")
    dataset = DrivingDataset([args.data], scenarios=args.scenario)
    if len(dataset) == 0:
        parser.error(f"--scenario: expected scenarios with samples in {args.data}, got {args.scenario}")
    results = {}
    print(
        f"speed input +{args.delta:g} m/s{' (and history)' if args.history else ''}, {len(dataset)} samples"
    )
    print("| policy | 1 s waypoint moves (m) | per m/s | 3 s waypoint moves (m) | per m/s |")
    print("|---|---|---|---|---|")
    for folder in args.policy:
        r = speed_sensitivity(
            policy_plan(folder, args.sampling_seed), dataset, args.delta, history=args.history
        )
        results[folder] = r
        print(
            f"| {folder} | {r['moved_1s_m']:+.3f} | {r['per_m_s_1s']:.3f} | {r['moved_3s_m']:+.3f} | "
            f"{r['per_m_s_3s']:.3f} |"
        )
    print("(a planner that keeps the speed it is told: 1.000 per m/s at 1 s, 3.000 at 3 s)")
    return results


if __name__ == "__main__":
    main()
