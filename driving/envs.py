"""highway-env environments adapted to the embedded world (continuous actions, our own episode logic).

The world (`driving.world`) decides when an episode ends and how it is scored, so these subclasses
switch off highway-env's rewards and terminations except the crash flag. They also fix what breaks
under `ContinuousAction` (merge and roundabout compute `action in [0, 2]` in `_rewards`), build finite
maps, and place traffic from the scenario's density with the env's own seeded generator so a seed
fixes the whole episode.
"""

from __future__ import annotations

import numpy as np
from highway_env import utils
from highway_env.envs.highway_env import HighwayEnv
from highway_env.envs.intersection_env import IntersectionEnv
from highway_env.envs.merge_env import MergeGenericEnv
from highway_env.envs.roundabout_env import RoundaboutEnv
from highway_env.road.regulation import RegulatedRoad
from highway_env.road.road import Road, RoadNetwork
from highway_env.vehicle.behavior import IDMVehicle
from highway_env.vehicle.kinematics import Vehicle


class _WorldEnvMixin:
    """No rewards, no time limit: only the crash flag terminates inside highway-env."""

    def _reward(self, action) -> float:
        return 0.0

    def _rewards(self, action) -> dict[str, float]:
        return {}

    def _is_terminated(self) -> bool:
        return bool(self.vehicle.crashed)

    def _is_truncated(self) -> bool:
        return False

    def _info(self, obs, action=None) -> dict:
        return {"crashed": bool(self.vehicle.crashed)}


def _idm_class(env):
    return utils.class_from_path(env.config["other_vehicles_type"])


class HighwayWorldEnv(_WorldEnvMixin, HighwayEnv):
    """A finite straight road (config "road_length") with IDM traffic ahead of the ego."""

    @classmethod
    def default_config(cls) -> dict:
        config = super().default_config()
        config.update({"road_length": 1200.0, "ego_speed": 25.0})
        return config

    def _create_road(self) -> None:
        self.road = Road(
            network=RoadNetwork.straight_road_network(
                self.config["lanes_count"], length=self.config["road_length"], speed_limit=30
            ),
            np_random=self.np_random,
            record_history=False,
        )

    def _create_vehicles(self) -> None:
        other = _idm_class(self)
        ego = Vehicle.create_random(
            self.road,
            speed=self.config["ego_speed"],
            lane_id=self.config["initial_lane_id"],
            spacing=self.config["ego_spacing"],
        )
        ego = self.action_type.vehicle_class(self.road, ego.position, ego.heading, ego.speed)
        self.controlled_vehicles = [ego]
        self.road.vehicles.append(ego)
        for _ in range(self.config["vehicles_count"]):
            vehicle = other.create_random(self.road, spacing=1 / self.config["vehicles_density"])
            vehicle.randomize_behavior()
            self.road.vehicles.append(vehicle)


class MergeWorldEnv(_WorldEnvMixin, MergeGenericEnv):
    """The ego starts on the access ramp and must merge into the right lane before the ramp ends."""

    @classmethod
    def default_config(cls) -> dict:
        config = super().default_config()
        config.update({"ego_start_m": 30.0, "ego_speed": 22.0, "traffic_speed": 26.0})
        return config

    def _make_vehicles(self) -> None:
        road = self.road
        lanes = self.config["lanes_count"]
        ramp = road.network.get_lane(("j", "k", 0))
        ego = self.action_type.vehicle_class(
            road,
            ramp.position(self.config["ego_start_m"], 0.0),
            ramp.heading_at(0.0),
            self.config["ego_speed"],
        )
        road.vehicles.append(ego)
        self.vehicle = ego
        other = _idm_class(self)
        length = self.config["before_merge_length"] + self.config["converge_merge_length"]
        length += self.config["parallel_merge_length"]
        spawned: dict[int, list[float]] = {i: [] for i in range(lanes)}
        for _ in range(self.config["vehicles_count"]):
            for _ in range(10):  # a few tries to find a free spot
                lane_id = int(self.np_random.integers(lanes))
                s = float(self.np_random.uniform(0.0, length))
                if all(abs(s - p) > 20.0 for p in spawned[lane_id]):
                    lane = road.network.get_lane(("a", "b", lane_id))
                    speed = self.config["traffic_speed"] + float(self.np_random.uniform(-2.0, 2.0))
                    vehicle = other(road, lane.position(s, 0.0), speed=speed)
                    vehicle.randomize_behavior()
                    road.vehicles.append(vehicle)
                    spawned[lane_id].append(s)
                    break


class RoundaboutWorldEnv(_WorldEnvMixin, RoundaboutEnv):
    """The ego approaches from the south and leaves by the exit in config "ego_destination".

    Traffic: vehicles in the ring's outer lane and on the other three approaches, each with a random exit.
    """

    RING_EDGES = (
        ("se", "ex"),
        ("ex", "ee"),
        ("ee", "nx"),
        ("nx", "ne"),
        ("ne", "wx"),
        ("wx", "we"),
        ("we", "sx"),
        ("sx", "se"),
    )
    APPROACHES = (("eer", "ees"), ("ner", "nes"), ("wer", "wes"))
    EXITS = ("exr", "nxr", "wxr", "sxr")

    @classmethod
    def default_config(cls) -> dict:
        config = super().default_config()
        config.update(
            {
                "ego_start_m": 75.0,
                "ego_speed": 10.0,
                "ego_destination": "nxr",
                "ring_vehicles": 3,
                "approach_vehicles": 3,
                "traffic_speed": 10.0,
            }
        )
        return config

    def _make_vehicles(self) -> None:
        road = self.road
        net = road.network
        approach = net.get_lane(("ser", "ses", 0))
        s0 = self.config["ego_start_m"]
        ego = self.action_type.vehicle_class(
            road, approach.position(s0, 0.0), approach.heading_at(s0), self.config["ego_speed"]
        )
        road.vehicles.append(ego)
        self.vehicle = ego
        other = _idm_class(self)
        rng = self.np_random

        def add(lane_index, s: float, exits: tuple[str, ...]) -> None:
            lane = net.get_lane(lane_index)
            position = lane.position(s, 0.0)
            if any(np.linalg.norm(v.position - position) < 12.0 for v in road.vehicles):
                return
            speed = self.config["traffic_speed"] + float(rng.normal()) * 1.0
            vehicle = other(road, position, lane.heading_at(s), speed)
            vehicle.plan_route_to(str(rng.choice(exits)))
            vehicle.randomize_behavior()
            # highway-env's IDM cars change lanes in the ring and leave from the inner lane straight across
            # the outer one without looking; keeping them in the outer lane keeps the traffic plausible.
            vehicle.enable_lane_change = False
            road.vehicles.append(vehicle)

        for _ in range(self.config["ring_vehicles"]):
            edge = self.RING_EDGES[int(rng.integers(len(self.RING_EDGES)))]
            lane_id = 1
            length = net.get_lane((*edge, lane_id)).length
            add((*edge, lane_id), float(rng.uniform(0.0, length)), ("exr", "nxr", "wxr", "sxr"))
        for _ in range(self.config["approach_vehicles"]):
            edge = self.APPROACHES[int(rng.integers(len(self.APPROACHES)))]
            length = net.get_lane((*edge, 0)).length
            exits = tuple(e for e in self.EXITS if e[0] != edge[0][0])
            add((*edge, 0), float(rng.uniform(0.2 * length, length)), exits)


class _FastRegulatedRoad(RegulatedRoad):
    """RegulatedRoad with a distance pre-check before its O(N^2) trajectory predictions.

    Two vehicles predicted at constant speed over `horizon` seconds cannot come within one vehicle
    length if they start farther apart than the distance both can cover plus that length, so skipping
    those pairs returns exactly what the full check would.
    """

    @staticmethod
    def is_conflict_possible(v1, v2, horizon: int = 3, step: float = 0.25) -> bool:
        reach = (abs(v1.speed) + abs(v2.speed)) * horizon + v1.LENGTH + 1.0
        if np.linalg.norm(v1.position - v2.position) > reach:
            return False
        return RegulatedRoad.is_conflict_possible(v1, v2, horizon, step)


class IntersectionIDMVehicle(IDMVehicle):
    """IntersectionEnv rewrites IDM class constants (jam distance, comfort accelerations) on the class it
    spawns; a private subclass keeps that from leaking into other scenarios run in the same process."""


class IntersectionWorldEnv(_WorldEnvMixin, IntersectionEnv):
    """The ego comes from the south and turns to config "destination" (o1 left, o2 straight, o3 right)."""

    @classmethod
    def default_config(cls) -> dict:
        config = super().default_config()
        config["other_vehicles_type"] = f"{__name__}.IntersectionIDMVehicle"
        return config

    def _make_road(self) -> None:
        super()._make_road()
        self.road = _FastRegulatedRoad(
            network=self.road.network, np_random=self.np_random, record_history=False
        )


ENV_CLASSES = {
    "highway": HighwayWorldEnv,
    "merge": MergeWorldEnv,
    "roundabout": RoundaboutWorldEnv,
    "intersection": IntersectionWorldEnv,
}
