"""The embedded driving world: one highway-env scenario episode with sensors, a route and event detection.

    world = World("roundabout")
    obs = world.reset(seed)              # -> automot.types.Observation
    result = world.step(action)          # action = [acc, steer] in [-1, 1]^2 (highway-env ContinuousAction)

Each policy step the world logs the ego state and every other object's box (display frame, see
`driving.geometry`), so labels that need the future (waypoints, agent boxes, meta-actions) can be cut
from the log once the episode is over. Events per step: collision with a vehicle or a static object,
leaving the road, reaching the destination, running out of time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")  # "dummy" renders black frames (NOTES.md)

import numpy as np

from automot.types import Observation
from driving.config import SensorConfig, SimConfig, check_trail
from driving.drivable import DrivableArea
from driving.geometry import Pose, heading_to_display, world_to_display, wrap_angle
from driving.route import ProgressTracker, Route
from driving.scenarios import Scenario, build_scenario
from driving.signals import blinker_box, signal_side

# Leaving the road counts once per excursion; an excursion this long ends the episode.
OFFROAD_END_S = 2.0
# The ego centre may be this far beyond a lane edge before it counts as off-road.
OFFROAD_MARGIN_M = 0.5


@dataclass
class ObjectState:
    """Other objects at one step: stable ids and boxes (K, 5) = (x, y, heading, length, width), display frame."""

    ids: np.ndarray  # (K,) int64
    boxes: np.ndarray  # (K, 5) float64
    speeds: np.ndarray  # (K,) float64
    static: np.ndarray  # (K,) bool
    # Blinkers of the vehicles that signal a turn (`driving.signals`), display frame; only with
    # `BEVConfig.turn_signals` (empty otherwise). Seen by the BEV only: not objects, not in any label.
    signal_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))  # (M, 5) float64


@dataclass
class StepState:
    step: int
    time_s: float
    ego: Pose
    speed: float
    acceleration: float
    yaw_rate: float
    objects: ObjectState
    progress_s: float
    on_road: bool


@dataclass
class Event:
    kind: str  # "collision_vehicle", "collision_static", "offroad"
    step: int
    time_s: float


@dataclass
class StepResult:
    events: list[Event] = field(default_factory=list)
    done: bool = False
    outcome: str | None = None  # "completed", "collision", "timeout", "offroad" when done


class World:
    def __init__(
        self,
        scenario: Scenario | str,
        sim: SimConfig | None = None,
        sensors: SensorConfig | None = None,
    ) -> None:
        self.scenario = build_scenario(scenario) if isinstance(scenario, str) else scenario
        self.sim = sim or SimConfig()
        self.sensors = sensors or SensorConfig()
        check_trail(self.sensors.bev, self.sim)
        render_mode = "rgb_array" if self.sensors.render else None
        from driving.sensors.bev import BEVRasterizer
        from driving.sensors.camera import Camera

        env_config = self.scenario.env_config(self.sim)
        if self.sensors.render:
            env_config.update(Camera.env_config(self.sensors.camera))
        self._env_config = env_config
        self.env = self.scenario.env_class()(config=dict(env_config), render_mode=render_mode)
        self.camera = Camera(self.sensors.camera) if self.sensors.render else None
        self.bev = BEVRasterizer(self.sensors.bev)
        self.seed: int | None = None
        self.route: Route | None = None
        self.progress: ProgressTracker | None = None
        self.log: list[StepState] = []
        self.frames: list[np.ndarray] = []
        self.step_index = 0

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int) -> Observation:
        self.seed = int(seed)
        config = dict(self._env_config)
        config.update(self.scenario.episode_options(self.seed))
        self.env.reset(seed=self.seed, options={"config": config})
        self._ghost_traffic()
        self.route = self.scenario.build_route(self.env).build_geometry(self.env.road.network)
        self.drivable = DrivableArea(self.env.road.network, margin_m=OFFROAD_MARGIN_M)
        self.progress = ProgressTracker(self.route, self.ego_pose.position)
        self.bev.set_map(self.env.road.network, self.route)
        self._object_ids: dict[int, tuple[int, object]] = {}  # id(obj) -> (episode id, obj)
        self.step_index = 0
        self.log = []
        self.frames = []
        self._offroad_since: float | None = None
        self._record(acceleration=0.0, yaw_rate=0.0)
        return self.observe()

    @property
    def time_s(self) -> float:
        return self.step_index * self.sim.dt

    @property
    def ego(self):
        return self.env.vehicle

    @property
    def ego_pose(self) -> Pose:
        p = world_to_display(self.ego.position)
        return Pose(float(p[0]), float(p[1]), float(heading_to_display(self.ego.heading)))

    def step(self, action: np.ndarray) -> StepResult:
        """Apply one policy-step action [acc, steer] in [-1, 1] (the ContinuousAction scale)."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action: expected 2 finite values [acc, steer], got {action!r}")
        previous = self.log[-1]
        self.env.step(action.astype(np.float32))
        self._ghost_traffic()
        self.step_index += 1
        pose = self.ego_pose
        dt = self.sim.dt
        acceleration = (float(self.ego.speed) - previous.speed) / dt
        yaw_rate = float(wrap_angle(pose.heading - previous.ego.heading)) / dt
        self.progress.update(pose.position)
        state = self._record(acceleration=acceleration, yaw_rate=yaw_rate)
        return self._events(state, previous)

    def _events(self, state: StepState, previous: StepState) -> StepResult:
        result = StepResult()
        t = state.time_s
        if self.ego.crashed:
            kind = "collision_static" if self._hit_static() else "collision_vehicle"
            result.events.append(Event(kind, state.step, t))
            result.done, result.outcome = True, "collision"
            return result
        if not state.on_road:
            if previous.on_road:
                result.events.append(Event("offroad", state.step, t))
                self._offroad_since = t
            if self._offroad_since is not None and t - self._offroad_since >= OFFROAD_END_S:
                result.done, result.outcome = True, "offroad"
                return result
        else:
            self._offroad_since = None
        if self.progress.completion >= 1.0:
            result.done, result.outcome = True, "completed"
        elif t >= self.scenario.config.duration_s - 1e-9:
            result.done, result.outcome = True, "timeout"
        return result

    def _ghost_traffic(self) -> None:
        # Other vehicles pass through each other (as in highway-env's HighwayEnvFast): its IDM traffic
        # sometimes crashes among itself at the roundabout, and wrecks would block routes for good.
        # The ego still collides with everything, because it checks its own collisions.
        for obj in [*self.env.road.vehicles, *self.env.road.objects]:
            if obj is not self.ego:
                obj.check_collisions = False

    def _hit_static(self) -> bool:
        ego = self.ego
        reach = ego.diagonal
        for obj in self.env.road.objects:
            if (
                getattr(obj, "solid", False)
                and np.linalg.norm(obj.position - ego.position) <= reach + obj.diagonal
            ):
                return True
        return False

    def on_road(self) -> bool:
        return self.drivable.contains(self.ego.position)

    # ------------------------------------------------------------------ state log
    def _object_id(self, obj) -> int:
        """This episode's id of `obj`, numbered in order of first sight.

        Keyed by `id(obj)` while holding `obj`, so the address cannot be freed and reused by a
        vehicle spawned later (which would merge two cars in the agent-future labels).
        """
        key = id(obj)
        if key not in self._object_ids:
            self._object_ids[key] = (len(self._object_ids), obj)
        return self._object_ids[key][0]

    def _objects(self) -> ObjectState:
        ids, boxes, speeds, static, signals = [], [], [], [], []
        ego = self.ego
        turn_signals = self.sensors.bev.turn_signals
        for obj in [*self.env.road.vehicles, *self.env.road.objects]:
            if obj is ego or not getattr(obj, "solid", True):
                continue
            p = world_to_display(obj.position)
            ids.append(self._object_id(obj))
            boxes.append((p[0], p[1], heading_to_display(obj.heading), obj.LENGTH, obj.WIDTH))
            speeds.append(float(obj.speed))
            static.append(obj not in self.env.road.vehicles)
            side = signal_side(obj, self.env.road.network) if turn_signals and not static[-1] else 0
            if side:
                signals.append(blinker_box(obj, side))
        return ObjectState(
            ids=np.array(ids, dtype=np.int64),
            boxes=np.array(boxes, dtype=np.float64).reshape(-1, 5),
            speeds=np.array(speeds, dtype=np.float64),
            static=np.array(static, dtype=bool),
            signal_boxes=np.array(signals, dtype=np.float64).reshape(-1, 5),
        )

    def _record(self, acceleration: float, yaw_rate: float) -> StepState:
        state = StepState(
            step=self.step_index,
            time_s=self.time_s,
            ego=self.ego_pose,
            speed=float(self.ego.speed),
            acceleration=acceleration,
            yaw_rate=yaw_rate,
            objects=self._objects(),
            progress_s=self.progress.current_s,
            on_road=self.on_road(),
        )
        self.log.append(state)
        if self.camera is not None:
            self.frames.append(self.camera.capture(self.env, state.ego))
        return state

    # ------------------------------------------------------------------ sensors
    def history_states(self, index: int, count: int, interval_steps: int) -> list[StepState | None]:
        """Logged states at steps index - (count-1)*interval ... index (oldest first); None before the start."""
        return [
            self.log[i] if i >= 0 else None
            for i in (index - k * interval_steps for k in range(count - 1, -1, -1))
        ]

    def observe(self, index: int | None = None, ue_index: int | None = None) -> Observation:
        """The observation at logged step `index` (default: now). The RGB history ends at `ue_index`
        (default `index`): an earlier `ue_index` gives a NuSync-style asynchronous sample."""
        from driving.sensors.observation import build_observation

        index = len(self.log) - 1 if index is None else index
        return build_observation(self, index, index if ue_index is None else ue_index)

    def close(self) -> None:
        self.env.close()

    @property
    def ego_size(self) -> tuple[float, float]:
        return float(self.ego.LENGTH), float(self.ego.WIDTH)
