"""Reference policies that need no training: the lower bound for closed-loop variance studies."""

from __future__ import annotations

import numpy as np

from automot import spec
from automot.types import EpisodeInfo, Observation, PolicyOutput


class ConstantVelocityPolicy:
    """Keeps the current speed and heading: waypoints v * t straight ahead, route points 2 m apart ahead.

    It ignores the road, the route and other vehicles, so it completes only straight routes with a free
    lane; that is the point of a lower reference.
    """

    name = "constant_velocity"

    def reset(self, episode: EpisodeInfo) -> None:
        pass

    def plan(self, observation: Observation) -> PolicyOutput:
        speed = float(observation.ego_state[spec.EGO_STATE_FIELDS.index("speed")])
        times = np.array(spec.waypoint_times_s())
        waypoints = np.stack([speed * times, np.zeros_like(times)], axis=1)
        ahead = spec.ROUTE_SPACING_M * np.arange(1, spec.NUM_ROUTE_POINTS + 1)
        route = np.stack([ahead, np.zeros_like(ahead)], axis=1)
        return PolicyOutput(waypoints=waypoints.astype(np.float32), route=route.astype(np.float32))


POLICIES = {
    "expert": "driving.expert:ExpertPolicy",
    "constant_velocity": "driving.baselines:ConstantVelocityPolicy",
}


def build_policy(name: str, expert_config=None):
    """A built-in policy by name ("expert" or "constant_velocity"); the expert is built with
    `expert_config` (a `driving.expert.ExpertConfig`; None: the defaults), the others ignore it."""
    import importlib

    if name not in POLICIES:
        raise ValueError(f"policy: expected one of {sorted(POLICIES)}, got {name!r}")
    module, cls = POLICIES[name].split(":")
    factory = getattr(importlib.import_module(module), cls)
    return factory(expert_config) if name == "expert" else factory()
