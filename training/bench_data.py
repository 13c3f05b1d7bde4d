"""A random but well-formed training batch (sensors + labels) for benchmarks that time compute."""

from __future__ import annotations

import torch

from automot import spec
from automot.types import SensorBatch
from driving.dataset import DrivingBatch


def synthetic_batch(
    b: int, *, image_size: int = 64, bev_size: int = 64, views: int = 1, seed: int = 0
) -> DrivingBatch:
    g = torch.Generator().manual_seed(seed)
    k, a = len(spec.DECISION_HORIZONS_S), 4
    t = torch.tensor(spec.waypoint_times_s())
    speed = 5 + 10 * torch.rand(b, 1, generator=g)
    sensors = SensorBatch(
        rgb_history=torch.randint(
            0,
            256,
            (b, spec.UE_HISTORY_FRAMES, views, 3, image_size, image_size),
            generator=g,
            dtype=torch.uint8,
        ),
        rgb=torch.randint(0, 256, (b, 3, image_size, image_size), generator=g, dtype=torch.uint8),
        bev=(torch.rand(b, len(spec.BEV_CHANNELS), bev_size, bev_size, generator=g) > 0.8).float(),
        ego_state=torch.cat([speed, torch.zeros(b, 2)], dim=1),
        ego_history=torch.randn(b, spec.HISTORY_LEN, spec.HISTORY_DIM, generator=g),
        target_point=torch.tensor([[20.0, 0.0]]).expand(b, 2).clone(),
        prompts=["follow the lane"] * b,
    )
    return DrivingBatch(
        sensors=sensors,
        waypoints=torch.stack([speed * t, torch.zeros(b, len(t))], dim=-1),
        route=torch.stack(
            [
                spec.ROUTE_SPACING_M * torch.arange(1, spec.NUM_ROUTE_POINTS + 1).float().expand(b, -1),
                torch.zeros(b, spec.NUM_ROUTE_POINTS),
            ],
            dim=-1,
        ),
        lateral=torch.randint(0, len(spec.LATERAL_ACTIONS), (b, k), generator=g),
        longitudinal=torch.randint(0, len(spec.LONGITUDINAL_ACTIONS), (b, k), generator=g),
        longitudinal3=torch.randint(0, len(spec.LONGITUDINAL_ACTIONS_3), (b, k), generator=g),
        agent_boxes=torch.zeros(b, spec.NUM_WAYPOINTS, a, 5),
        agent_mask=torch.zeros(b, spec.NUM_WAYPOINTS, a, dtype=torch.bool),
        ego_size=torch.tensor([[5.0, 2.0]]).expand(b, 2).clone(),
        scene_text=["lead vehicle 20 m ahead"] * b,
    )
