"""Named driving scenarios over highway-env, and the disjoint train / validation / test seed sets.

A scenario fixes the road, the traffic (scaled by `density`), the ego's start, a route from start to
destination and a time limit. A seed fixes one episode of it: everything random (traffic placement,
the ego's lane or exit) is drawn from generators seeded by it. Seeds come from three disjoint ranges,
so a layout used for training is never used for closed-loop evaluation.

    SCENARIOS.build("roundabout", density=1.5)   # -> RoundaboutScenario
    split_seeds("test", 20)                      # -> 20 test seeds
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from itertools import pairwise

import numpy as np

from automot.checks import check_choice, check_positive
from automot.registry import Registry
from driving.config import SimConfig
from driving.envs import ENV_CLASSES
from driving.route import Maneuver, Route

# Disjoint seed ranges: [start, stop) per split.
SEED_SPLITS: dict[str, tuple[int, int]] = {
    "train": (0, 1_000_000),
    "val": (1_000_000, 1_100_000),
    "test": (1_100_000, 1_200_000),
}


def split_seeds(split: str, count: int, start: int = 0) -> list[int]:
    """Seeds `start`..`start + count - 1` of `split` (fixed, so runs are comparable across machines)."""
    check_choice("split", split, list(SEED_SPLITS))
    lo, hi = SEED_SPLITS[split]
    if count < 0 or start < 0 or lo + start + count > hi:
        raise ValueError(
            f"count/start: expected 0 <= start and start + count <= {hi - lo} for split {split!r}, got start={start}, count={count}"
        )
    return list(range(lo + start, lo + start + count))


def split_of(seed: int) -> str:
    for name, (lo, hi) in SEED_SPLITS.items():
        if lo <= seed < hi:
            return name
    raise ValueError(f"seed: expected an int in one of the split ranges {SEED_SPLITS}, got {seed!r}")


@dataclass
class ScenarioConfig:
    """Common knobs: the time limit (episode length) and a traffic density multiplier."""

    duration_s: float = 30.0
    density: float = 1.0

    def __post_init__(self) -> None:
        check_positive(f"{type(self).__name__}.duration_s", self.duration_s)
        check_positive(f"{type(self).__name__}.density", self.density, allow_zero=True)


@dataclass
class HighwayConfig(ScenarioConfig):
    duration_s: float = 25.0
    route_length_m: float = 400.0
    lanes: int = 3
    vehicles: int = 12  # at density 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("HighwayConfig.route_length_m", self.route_length_m)
        if not isinstance(self.lanes, int) or self.lanes < 2:
            raise ValueError(f"HighwayConfig.lanes: expected an int >= 2, got {self.lanes!r}")


@dataclass
class MergeConfig(ScenarioConfig):
    duration_s: float = 25.0
    vehicles: int = 6


@dataclass
class RoundaboutConfig(ScenarioConfig):
    duration_s: float = 40.0
    ring_vehicles: int = 3
    approach_vehicles: int = 3


@dataclass
class IntersectionConfig(ScenarioConfig):
    duration_s: float = 25.0
    initial_vehicles: int = 8
    spawn_per_s: float = 0.6


class Scenario(ABC):
    """One named scenario. Subclasses say how to build the env, draw an episode and lay the route."""

    name: str = "?"
    config_class: type[ScenarioConfig] = ScenarioConfig
    cruise_speed: float = 10.0  # the expert's desired speed [m/s]
    discretionary_lane_changes: bool = False  # may the expert overtake (MOBIL) or only keep its route lane
    yield_before_junction: bool = False  # yield only before the maneuver's junction, never stop inside it

    def __init__(self, **overrides) -> None:
        known = {f.name for f in fields(self.config_class)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(
                f"{self.config_class.__name__}: unknown fields {unknown}; expected a subset of {sorted(known)}"
            )
        self.config = self.config_class(**overrides)

    def env_class(self) -> type:
        return ENV_CLASSES[self.name]

    def env_config(self, sim: SimConfig) -> dict:
        """highway-env config for this scenario (constant over episodes)."""
        return {
            "observation": {"type": "AttributesObservation", "attributes": ["time"]},
            "action": {
                "type": "ContinuousAction",
                "acceleration_range": list(sim.acceleration_range),
                "steering_range": [-sim.steering_range_rad, sim.steering_range_rad],
            },
            "simulation_frequency": sim.sim_hz,
            "policy_frequency": sim.policy_hz,
            "duration": 1e9,  # the world applies the time limit
            **self._env_config(),
        }

    @abstractmethod
    def _env_config(self) -> dict: ...

    def episode_options(self, seed: int) -> dict:
        """Per-episode highway-env config drawn from the seed (e.g. which exit to take)."""
        return {}

    @abstractmethod
    def build_route(self, env) -> Route:
        """The route for the episode just reset in `env` (highway-env, unwrapped)."""

    def describe(self) -> dict:
        return {"name": self.name, **vars(self.config)}

    @staticmethod
    def _count(base: float, density: float) -> int:
        return round(base * density)


SCENARIOS: Registry[Scenario] = Registry("scenario")


def register_scenario(name: str):
    def decorator(cls):
        cls.name = name
        return SCENARIOS.register(name)(cls)

    return decorator


def build_scenario(name: str, **overrides) -> Scenario:
    return SCENARIOS.build(name, **overrides)


def available_scenarios() -> list[str]:
    return SCENARIOS.names()


def _episode_rng(seed: int, salt: int) -> np.random.Generator:
    # A stream separate from highway-env's own np_random (also seeded by `seed`).
    return np.random.default_rng(np.random.SeedSequence([int(seed), salt]))


@register_scenario("highway")
class HighwayScenario(Scenario):
    config_class = HighwayConfig
    cruise_speed = 27.0
    discretionary_lane_changes = True

    def _env_config(self) -> dict:
        c = self.config
        return {
            "lanes_count": c.lanes,
            "vehicles_count": self._count(c.vehicles, c.density),
            "road_length": c.route_length_m + 600.0,
            "vehicles_density": 1.0,
            "ego_spacing": 2.0,
        }

    def build_route(self, env) -> Route:
        lane_index = env.vehicle.lane_index
        s0, _ = env.road.network.get_lane(lane_index).local_coordinates(env.vehicle.position)
        return Route(
            edges=[("0", "1")],
            lanes=[lane_index[2]],
            start_s=float(s0),
            end_s=float(s0) + self.config.route_length_m,
        )


@register_scenario("merge")
class MergeScenario(Scenario):
    config_class = MergeConfig
    cruise_speed = 25.0

    def _env_config(self) -> dict:
        return {"lanes_count": 2, "vehicles_count": self._count(self.config.vehicles, self.config.density)}

    def episode_options(self, seed: int) -> dict:
        rng = _episode_rng(seed, 1)
        return {"ego_start_m": float(rng.uniform(20.0, 50.0)), "ego_speed": float(rng.uniform(18.0, 24.0))}

    def build_route(self, env) -> Route:
        s0, _ = env.road.network.get_lane(("j", "k", 0)).local_coordinates(env.vehicle.position)
        return Route(
            edges=[("j", "k"), ("k", "b"), ("b", "c"), ("c", "d")],
            lanes=[0, 0, 2, 1],
            start_s=float(s0),
            end_s=60.0,
            maneuver=Maneuver("merge", "merge left", first_edge=2, last_edge=2),
        )


_EXIT_WORDS = {"exr": "first", "nxr": "second", "wxr": "third"}


@register_scenario("roundabout")
class RoundaboutScenario(Scenario):
    config_class = RoundaboutConfig
    cruise_speed = 12.0

    def _env_config(self) -> dict:
        c = self.config
        return {
            "ring_vehicles": self._count(c.ring_vehicles, c.density),
            "approach_vehicles": self._count(c.approach_vehicles, c.density),
        }

    def episode_options(self, seed: int) -> dict:
        rng = _episode_rng(seed, 2)
        return {
            "ego_destination": str(rng.choice(list(_EXIT_WORDS))),
            "ego_start_m": float(rng.uniform(80.0, 95.0)),
        }

    def build_route(self, env) -> Route:
        destination = env.config["ego_destination"]
        nodes = env.road.network.shortest_path("ser", destination)
        edges = list(pairwise(nodes))
        ring = {tuple(e) for e in env.RING_EDGES}
        lanes = [1 if e in ring else 0 for e in edges]
        s0, _ = env.road.network.get_lane(("ser", "ses", 0)).local_coordinates(env.vehicle.position)
        ring_idx = [i for i, e in enumerate(edges) if e in ring]
        return Route(
            edges=edges,
            lanes=lanes,
            start_s=float(s0),
            end_s=30.0,
            maneuver=Maneuver(
                "roundabout",
                f"take the {_EXIT_WORDS[destination]} exit",
                first_edge=ring_idx[0],
                last_edge=ring_idx[-1],
            ),
        )


_TURN_WORDS = {"o1": "turn left", "o2": "go straight", "o3": "turn right"}


@register_scenario("intersection")
class IntersectionScenario(Scenario):
    config_class = IntersectionConfig
    cruise_speed = 9.0
    yield_before_junction = True

    def _env_config(self) -> dict:
        c = self.config
        return {
            "initial_vehicle_count": max(self._count(c.initial_vehicles, c.density), 1),
        }

    def env_config(self, sim: SimConfig) -> dict:
        config = super().env_config(sim)
        # highway-env tries one spawn per policy step: convert the rate per second.
        config["spawn_probability"] = min(self.config.spawn_per_s * self.config.density / sim.policy_hz, 1.0)
        return config

    def episode_options(self, seed: int) -> dict:
        rng = _episode_rng(seed, 3)
        return {"destination": str(rng.choice(list(_TURN_WORDS)))}

    def build_route(self, env) -> Route:
        destination = env.config["destination"]
        k = destination[1]
        edges = [("o0", "ir0"), ("ir0", f"il{k}"), (f"il{k}", destination)]
        s0, _ = env.road.network.get_lane(("o0", "ir0", 0)).local_coordinates(env.vehicle.position)
        return Route(
            edges=edges,
            lanes=[0, 0, 0],
            start_s=float(s0),
            end_s=30.0,
            maneuver=Maneuver("intersection", _TURN_WORDS[destination], first_edge=1, last_edge=1),
        )
