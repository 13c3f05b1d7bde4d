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


class _TrajectoryMetrics:
    """L2 and collision rate under both protocols, fed batch by batch."""

    def __init__(self) -> None:
        self.l2 = {p: PlanL2(p) for p in PROTOCOLS}
        self.collision = {p: CollisionRate(p) for p in PROTOCOLS}

    def update(self, waypoints: torch.Tensor, batch) -> None:
        from driving.collision import plan_collisions

        collided = plan_collisions(waypoints, batch.agent_boxes, batch.agent_mask, batch.ego_size)
        for p in PROTOCOLS:
            self.l2[p].update(waypoints, batch.waypoints)
            self.collision[p].update(collided)

    def compute(self) -> dict[str, float]:
        out = {}
        for p in PROTOCOLS:
            both = {**self.l2[p].compute(), **self.collision[p].compute()}
            out.update({f"{k}_{p}": float(v) for k, v in both.items()})
        return out


def _loader(data_dirs, scenarios: list[str] | None, batch_size: int) -> DataLoader:
    from driving.dataset import DrivingDataset, collate

    dataset = DrivingDataset(data_dirs, scenarios=scenarios)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)


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
    loader = _loader(data_dirs, scenarios, batch_size)
    backbone.ae.eval()
    generator = torch.Generator().manual_seed(sampling_seed)
    trajectories, decisions = _TrajectoryMetrics(), DecisionAccuracy()
    lateral_set = backbone.ae.config.decision_set != "longitudinal3"
    for batch in loader:
        out = backbone(batch.sensors, generator=generator)
        trajectories.update(out.plan.waypoints, batch)
        lateral = batch.lateral if lateral_set else None
        lon = batch.longitudinal if lateral_set else batch.longitudinal3
        decisions.update(out.lateral_logits, out.longitudinal_logits, lateral, lon)
    result: dict[str, float] = {"samples": len(loader.dataset), **trajectories.compute()}
    result.update({k: float(v) for k, v in decisions.compute().items()})
    return result


@torch.no_grad()
def evaluate_student_open_loop(
    student, data_dirs, *, batch_size: int = 32, scenarios: list[str] | None = None
) -> dict[str, float]:
    """The same open-loop metrics for a distilled student (`latent.student.StudentPlanner`), run alone."""
    loader = _loader(data_dirs, scenarios, batch_size)
    student.eval()
    trajectories, decisions = _TrajectoryMetrics(), DecisionAccuracy()
    lateral_set = student.config.decision_set != "longitudinal3"
    for batch in loader:
        out = student(batch.sensors)
        trajectories.update(out.plan.waypoints, batch)
        lateral = batch.lateral if lateral_set else None
        lon = batch.longitudinal if lateral_set else batch.longitudinal3
        decisions.update(out.lateral_logits, out.longitudinal_logits, lateral, lon)
    result: dict[str, float] = {"samples": len(loader.dataset), **trajectories.compute()}
    result.update({k: float(v) for k, v in decisions.compute().items()})
    return result


def constant_velocity_open_loop(data_dirs, scenarios: list[str] | None = None) -> dict[str, float]:
    """The same L2 / collision numbers for the constant-velocity plan (v * t straight ahead)."""
    loader = _loader(data_dirs, scenarios, 256)
    times = torch.tensor(spec.waypoint_times_s())
    speed_index = spec.EGO_STATE_FIELDS.index("speed")
    trajectories = _TrajectoryMetrics()
    for batch in loader:
        v = batch.sensors.ego_state[:, speed_index : speed_index + 1]
        trajectories.update(torch.stack([v * times, torch.zeros_like(v * times)], dim=-1), batch)
    return {"samples": len(loader.dataset), **trajectories.compute()}


def evaluate_closed_loop(
    policy,
    scenarios: list[str],
    seeds: list[int],
    *,
    records_path: str | Path | None = None,
    eval_config=None,
    on_episode=None,
) -> dict:
    """Drive `policy` through every (scenario, seed); Bench2Drive summary over all of them, with a
    per-scenario breakdown. Records go to `records_path` as they finish (a rerun resumes);
    `on_episode(record)` is called after each new episode."""
    from driving import EvalConfig, evaluate, summarize

    config = eval_config or EvalConfig()
    records = []
    for scenario in scenarios:
        records += evaluate(policy, scenario, seeds, config, records_path=records_path, on_episode=on_episode)
    return summarize(records)
