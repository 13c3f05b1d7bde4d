"""Evaluate a policy: open loop on a collected dataset (L2, collision, decision accuracy) and closed
loop in the embedded world (DS, SR, route completion, infractions).

Both take the sampling seed explicitly: the diffusion head's noise comes from it (open loop: one
generator for the pass; closed loop: the planner reseeds per episode from (seed, episode seed)).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from automot import spec
from mot.backbone import MoTBackbone
from training.metrics import CollisionRate, DecisionAccuracy, PlanL2

PROTOCOLS = ("stp3", "uniad")


@torch.no_grad()
def evaluate_open_loop(
    backbone: MoTBackbone,
    data_dirs,
    *,
    sampling_seed: int = 0,
    batch_size: int = 32,
    scenarios: list[str] | None = None,
) -> dict[str, float]:
    """Open-loop metrics of `backbone` (its current head) over the dataset(s) in `data_dirs`."""
    from driving.collision import plan_collisions
    from driving.dataset import DrivingDataset, collate

    dataset = DrivingDataset(data_dirs, scenarios=scenarios)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    backbone.ae.eval()
    generator = torch.Generator().manual_seed(sampling_seed)
    l2 = {p: PlanL2(p) for p in PROTOCOLS}
    collision = {p: CollisionRate(p) for p in PROTOCOLS}
    decisions = DecisionAccuracy()
    lateral_set = backbone.ae.config.decision_set != "longitudinal3"
    for batch in loader:
        out = backbone(batch.sensors, generator=generator)
        wp = out.plan.waypoints
        collided = plan_collisions(wp, batch.agent_boxes, batch.agent_mask, batch.ego_size)
        for p in PROTOCOLS:
            l2[p].update(wp, batch.waypoints)
            collision[p].update(collided)
        lon = batch.longitudinal if lateral_set else batch.longitudinal3
        decisions.update(
            out.lateral_logits, out.longitudinal_logits, batch.lateral if lateral_set else None, lon
        )
    result: dict[str, float] = {"samples": len(dataset)}
    for p in PROTOCOLS:
        result.update(
            {f"{k}_{p}": float(v) for k, v in {**l2[p].compute(), **collision[p].compute()}.items()}
        )
    result.update({k: float(v) for k, v in decisions.compute().items()})
    return result


def constant_velocity_open_loop(data_dirs, scenarios: list[str] | None = None) -> dict[str, float]:
    """The same L2 / collision numbers for the constant-velocity plan (v * t straight ahead)."""
    from driving.collision import plan_collisions
    from driving.dataset import DrivingDataset, collate

    dataset = DrivingDataset(data_dirs, scenarios=scenarios)
    loader = DataLoader(dataset, batch_size=256, shuffle=False, collate_fn=collate)
    times = torch.tensor(spec.waypoint_times_s())
    speed_index = spec.EGO_STATE_FIELDS.index("speed")
    l2 = {p: PlanL2(p) for p in PROTOCOLS}
    collision = {p: CollisionRate(p) for p in PROTOCOLS}
    for batch in loader:
        v = batch.sensors.ego_state[:, speed_index : speed_index + 1]
        wp = torch.stack([v * times, torch.zeros_like(v * times)], dim=-1)
        collided = plan_collisions(wp, batch.agent_boxes, batch.agent_mask, batch.ego_size)
        for p in PROTOCOLS:
            l2[p].update(wp, batch.waypoints)
            collision[p].update(collided)
    result: dict[str, float] = {"samples": len(dataset)}
    for p in PROTOCOLS:
        result.update(
            {f"{k}_{p}": float(v) for k, v in {**l2[p].compute(), **collision[p].compute()}.items()}
        )
    return result


def evaluate_closed_loop(
    policy,
    scenarios: list[str],
    seeds: list[int],
    *,
    records_path: str | Path | None = None,
    eval_config=None,
) -> dict:
    """Drive `policy` through every (scenario, seed); Bench2Drive summary over all of them, with a
    per-scenario breakdown. Records go to `records_path` as they finish (a rerun resumes)."""
    from driving import EvalConfig, evaluate, summarize

    config = eval_config or EvalConfig()
    records = []
    for scenario in scenarios:
        records += evaluate(policy, scenario, seeds, config, records_path=records_path)
    return summarize(records)
