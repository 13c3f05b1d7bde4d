"""Assemble an `automot.types.Observation` from a world's log (paper section 3.1 inputs).

Shapes (defaults in brackets): rgb_history (T, V=1, 3, H, W) uint8 [4, 1, 3, 64, 64], oldest first,
`SensorConfig.frame_interval_s` apart, ending at the understanding expert's step; rgb (3, H, W) uint8
and bev (C, Hb, Wb) float32 [4, 64, 64] at the action expert's step; ego_state (3,) = speed [m/s],
acceleration [m/s^2], yaw rate [rad/s, left positive]; ego_history (4, 4) = x, y, heading, speed of the
four states 2.0, 1.5, 1.0, 0.5 s before now in the current ego frame; target_point (2,) ego frame.

Before the episode start the history is extrapolated backwards at the first state's constant velocity
(images: the first frame repeats), so every step has a full-size observation.
"""

from __future__ import annotations

import numpy as np

from automot import spec
from automot.types import Observation
from driving.language import navigation_prompt


def ego_history(world, index: int) -> np.ndarray:
    """(HISTORY_LEN, HISTORY_DIM) float32: past states at HISTORY_DT_S spacing in the ego frame at `index`."""
    step = world.sim.steps(spec.HISTORY_DT_S)
    now = world.log[index].ego
    first = world.log[0]
    rows = []
    for k in range(spec.HISTORY_LEN, 0, -1):
        i = index - k * step
        if i >= 0:
            s = world.log[i]
            pose, speed = s.ego, s.speed
            position = pose.position
            heading = pose.heading
        else:  # constant-velocity extrapolation before the first logged state
            back = -i * world.sim.dt * first.speed
            position = first.ego.position - back * np.array(
                [np.cos(first.ego.heading), np.sin(first.ego.heading)]
            )
            heading, speed = first.ego.heading, first.speed
        local = now.to_local(position)
        rows.append((local[0], local[1], now.heading_to_local(heading), speed))
    return np.asarray(rows, dtype=np.float32)


def target_point(world, index: int) -> np.ndarray:
    state = world.log[index]
    point = world.route.point_at(state.progress_s + world.sensors.target_distance_m)
    return state.ego.to_local(point).astype(np.float32)


def rgb_history(world, ue_index: int) -> np.ndarray:
    cfg = world.sensors
    interval = world.sim.steps(cfg.frame_interval_s)
    frames = [world.frames[max(ue_index - k * interval, 0)] for k in range(cfg.history_frames - 1, -1, -1)]
    return np.stack(frames)[:, None]  # (T, V=1, 3, H, W)


def trail_boxes(world, index: int) -> np.ndarray:
    """(N, 5) display-frame boxes of the moving objects at the policy steps of the last
    `BEVConfig.vehicle_trail_s` seconds before logged step `index` (none before the episode start;
    static objects do not move). Empty when trails are off."""
    trail_s = world.bev.config.vehicle_trail_s
    if not trail_s:
        return np.zeros((0, 5))
    past = [world.log[i] for i in range(index - world.sim.steps(trail_s), index) if i >= 0]
    boxes = [s.objects.boxes[~s.objects.static] for s in past]
    return np.concatenate(boxes) if boxes else np.zeros((0, 5))


def render_bev(world, index: int) -> np.ndarray:
    """The BEV (C, Hb, Wb) of logged step `index`: the other objects, their blinkers when the world's
    `BEVConfig.turn_signals` is on (`ObjectState.signal_boxes`, empty otherwise) and their motion
    trails when `BEVConfig.vehicle_trail_s` is set (`trail_boxes`)."""
    state = world.log[index]
    objects = state.objects
    return world.bev.render(
        state.ego, np.concatenate([objects.boxes, objects.signal_boxes, trail_boxes(world, index)])
    )


def build_observation(world, index: int, ue_index: int) -> Observation:
    if not 0 <= ue_index <= index < len(world.log):
        raise ValueError(
            f"observe: expected 0 <= ue_index <= index < {len(world.log)} logged steps, got index={index}, ue_index={ue_index}"
        )
    state = world.log[index]
    if world.camera is None:
        raise ValueError("observe: expected a world built with SensorConfig.render=True, got render=False")
    return Observation(
        rgb_history=rgb_history(world, ue_index),
        rgb=world.frames[index],
        bev=render_bev(world, index),
        ego_state=np.array([state.speed, state.acceleration, state.yaw_rate], dtype=np.float32),
        ego_history=ego_history(world, index),
        target_point=target_point(world, index),
        prompt=navigation_prompt(world.route, world.log[ue_index].progress_s),
        step=state.step,
        time_s=state.time_s,
    )
