"""Configuration of the embedded driving world: simulation rates, sensors, labels.

Small dataclasses, validated on construction, nested by component. They round-trip through JSON
(`to_dict` / `from_dict`) because dataset indexes and evaluation records store them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

from automot import spec
from automot.checks import check_positive


def _is_multiple(value: float, step: float) -> bool:
    ratio = value / step
    return abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1


@dataclass
class SimConfig:
    """Simulation and policy rates.

    Policy 4 Hz over a 12 Hz simulation: 0.5 s (the waypoint, history and NuSync spacing) is exactly two
    policy steps, the understanding expert refreshing every 2 steps runs at the paper's 2 Hz, and a 4 Hz
    planner is 2.5x cheaper in closed loop than a 10 Hz one. Three simulation steps per action keep
    collisions at 30 m/s resolved to 2.5 m.
    """

    sim_hz: int = 12
    policy_hz: int = 4
    acceleration_range: tuple[float, float] = (-5.0, 5.0)
    steering_range_rad: float = math.pi / 4

    def __post_init__(self) -> None:
        check_positive("SimConfig.sim_hz", self.sim_hz)
        check_positive("SimConfig.policy_hz", self.policy_hz)
        if self.sim_hz % self.policy_hz:
            raise ValueError(
                f"SimConfig.sim_hz: expected a multiple of policy_hz={self.policy_hz}, got {self.sim_hz}"
            )
        for name, step_s in (("WAYPOINT_DT_S", spec.WAYPOINT_DT_S), ("HISTORY_DT_S", spec.HISTORY_DT_S)):
            if not _is_multiple(step_s, 1.0 / self.policy_hz):
                raise ValueError(
                    f"SimConfig.policy_hz: expected spec.{name}={step_s} s to be a whole number of policy steps, "
                    f"got policy_hz={self.policy_hz}"
                )
        lo, hi = self.acceleration_range
        if not lo < 0 < hi:
            raise ValueError(
                f"SimConfig.acceleration_range: expected (negative, positive), got {self.acceleration_range}"
            )
        check_positive("SimConfig.steering_range_rad", self.steering_range_rad)

    @property
    def dt(self) -> float:
        """Seconds per policy step."""
        return 1.0 / self.policy_hz

    def steps(self, seconds: float) -> int:
        """Policy steps in `seconds` (must be a whole number)."""
        if not _is_multiple(seconds, self.dt):
            raise ValueError(f"seconds: expected a multiple of {self.dt} s, got {seconds}")
        return round(seconds / self.dt)


@dataclass
class CameraConfig:
    """The rendered highway-env frame as the RGB camera.

    With `ego_aligned` the frame is resampled so the ego points up (x forward = up), seeing `ahead_m`
    forward, `behind_m` backward and `side_m` to each side; otherwise the world-aligned frame centred
    on the ego is resized. `supersample` renders at that many times the output resolution first.
    """

    height: int = 64
    width: int = 64
    ahead_m: float = 40.0
    behind_m: float = 12.0
    side_m: float = 26.0
    ego_aligned: bool = True
    supersample: int = 2

    def __post_init__(self) -> None:
        for name in ("height", "width", "supersample"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"CameraConfig.{name}: expected an int >= 1, got {value!r}")
        check_positive("CameraConfig.ahead_m", self.ahead_m)
        check_positive("CameraConfig.behind_m", self.behind_m, allow_zero=True)
        check_positive("CameraConfig.side_m", self.side_m)


@dataclass
class BEVConfig:
    """The BEV raster in the ego frame: x forward = up (row 0 is farthest ahead), y left = left."""

    ahead_m: float = 48.0
    behind_m: float = 16.0
    side_m: float = 32.0
    resolution_m: float = 1.0
    # Other vehicles show a blinker in the `vehicles` channel before they turn at a junction
    # (`driving.signals`): what a camera would see of the routes the expert knows. Off: as before.
    turn_signals: bool = False
    # Motion trails: the `vehicles` channel also marks the other vehicles' footprints at every policy
    # step of the last `vehicle_trail_s` seconds (in the current ego frame), so a moving vehicle is a
    # streak as long as the road it covered and a stopped one a plain box. One frame shows where the
    # others are, not how fast they come; the expert reads their speeds (a temporal BEV stands for
    # that). A whole number of policy steps; 0: off, as before.
    vehicle_trail_s: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.turn_signals, bool):
            raise ValueError(f"BEVConfig.turn_signals: expected a bool, got {self.turn_signals!r}")
        trail = self.vehicle_trail_s
        if isinstance(trail, bool) or not isinstance(trail, (int, float)) or not math.isfinite(trail):
            raise ValueError(
                f"BEVConfig.vehicle_trail_s: expected a finite number of seconds, got {self.vehicle_trail_s!r}"
            )
        check_positive("BEVConfig.vehicle_trail_s", self.vehicle_trail_s, allow_zero=True)
        check_positive("BEVConfig.resolution_m", self.resolution_m)
        check_positive("BEVConfig.ahead_m", self.ahead_m)
        check_positive("BEVConfig.behind_m", self.behind_m, allow_zero=True)
        check_positive("BEVConfig.side_m", self.side_m)
        for name, extent in (
            ("ahead_m + behind_m", self.ahead_m + self.behind_m),
            ("2 * side_m", 2 * self.side_m),
        ):
            if not _is_multiple(extent, self.resolution_m):
                raise ValueError(
                    f"BEVConfig.{name}: expected a multiple of resolution_m={self.resolution_m}, got {extent}"
                )

    @property
    def height(self) -> int:
        return round((self.ahead_m + self.behind_m) / self.resolution_m)

    @property
    def width(self) -> int:
        return round(2 * self.side_m / self.resolution_m)

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> BEVConfig:
        """The default geometry showing `options` (`BEV_OPTIONS`: what a policy's `sensor_options`
        and a dataset's index record, so a policy is evaluated and fine-tuned in the world it was
        trained in; other keys ignored)."""
        options = options or {}
        return cls(**{name: options[name] for name in BEV_OPTIONS if name in options})


def check_trail(bev: BEVConfig, sim: SimConfig) -> None:
    """A motion trail (`BEVConfig.vehicle_trail_s`) is a whole number of the simulation's policy steps."""
    if bev.vehicle_trail_s and not _is_multiple(bev.vehicle_trail_s, sim.dt):
        raise ValueError(
            f"BEVConfig.vehicle_trail_s: expected a multiple of the policy step {sim.dt} s "
            f"(SimConfig.policy_hz={sim.policy_hz}), got {bev.vehicle_trail_s}"
        )


# BEVConfig fields that change what the BEV shows, with their defaults (absent from records made
# before each existed: the default is what those were made with).
BEV_OPTIONS: dict[str, Any] = {"turn_signals": False, "vehicle_trail_s": 0.0}


@dataclass
class SensorConfig:
    camera: CameraConfig = field(default_factory=CameraConfig)
    bev: BEVConfig = field(default_factory=BEVConfig)
    # RGB history for the understanding expert: frames this far apart, oldest first.
    history_frames: int = spec.UE_HISTORY_FRAMES
    frame_interval_s: float = 0.5
    # The target point lies this far ahead along the route.
    target_distance_m: float = 30.0
    render: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.camera, dict):
            self.camera = CameraConfig(**self.camera)
        if isinstance(self.bev, dict):
            self.bev = BEVConfig(**self.bev)
        if not isinstance(self.history_frames, int) or self.history_frames < 1:
            raise ValueError(
                f"SensorConfig.history_frames: expected an int >= 1, got {self.history_frames!r}"
            )
        check_positive("SensorConfig.frame_interval_s", self.frame_interval_s)
        check_positive("SensorConfig.target_distance_m", self.target_distance_m)


@dataclass
class LabelConfig:
    """Ground-truth options: how many agents' future boxes to keep, and from how far."""

    max_agents: int = 16
    agent_range_m: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_agents, int) or self.max_agents < 1:
            raise ValueError(f"LabelConfig.max_agents: expected an int >= 1, got {self.max_agents!r}")
        check_positive("LabelConfig.agent_range_m", self.agent_range_m)


def to_dict(config: Any) -> dict:
    """A JSON-ready dict of a (nested) config dataclass."""
    if not is_dataclass(config):
        raise ValueError(f"config: expected a dataclass instance, got {type(config).__name__}")
    return asdict(config)


def from_dict(cls: type, data: dict) -> Any:
    """Rebuild a config dataclass from `to_dict` output; unknown keys are an error, not ignored."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {unknown}; expected a subset of {sorted(known)}")
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)
