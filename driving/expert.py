"""The rule-based expert (the PDM-Lite role): a `Policy` that plans from privileged simulator state.

Each step it (1) picks a lane on the current route edge: the route's lane, a mandatory change when the
current lane does not continue along the route (the merge), or a MOBIL-style discretionary change where
the scenario allows (highway); (2) lays a path along that lane's chain of lanes, blending from the ego's
offset; (3) forecasts every other object along its own lanes (`driving.prediction`); (4) chooses the
speed with IDM behind the objects in its corridor, under lane and curvature speed limits, and yields
by a virtual stop line before any crossing or merging conflict it cannot clear with a time margin
(junction and roundabout entries); (5) rolls that speed out along the path into 6 waypoints at 0.5 s
and 20 route points 2 m apart, ego frame. The closed loop tracks them like any other policy's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from automot import spec
from automot.checks import check_choice, check_positive
from automot.types import EpisodeInfo, Observation, PolicyOutput
from driving.geometry import arc_length, interpolate_polyline, world_to_display
from driving.idm import IDMParams, LaneGap, idm_accel, lane_change_safe
from driving.prediction import ROUTES, corridor_hits, forecast
from driving.sensors.lanes import lane_coordinates


@dataclass
class ExpertConfig:
    idm: IDMParams = field(default_factory=IDMParams)
    max_decel: float = 6.0
    lateral_accel: float = 3.5  # curvature speed limit: v <= sqrt(a_lat / kappa)
    lane_change_s: float = 2.5  # lateral transition length = speed * this (>= 15 m)
    lane_change_gain: float = 0.4  # MOBIL threshold [m/s^2] (to the right: half)
    lane_change_safe_decel: float = 2.5
    lane_change_cooldown_s: float = 2.0
    horizon_s: float = 5.0  # forecast horizon for conflicts
    forecast_dt: float = 0.25
    corridor_margin_m: float = 0.4
    conflict_margin_m: float = 2.0  # longitudinal margin at a conflict, plus `conflict_margin_s` x speed
    conflict_margin_s: float = 0.6
    stop_margin_m: float = 2.0
    perception_m: float = 150.0
    # Which way the other vehicles go (`driving.prediction`): "known", their planned routes (privileged);
    # "any", every way they could go, as a driver who sees only positions and speeds must assume.
    other_routes: str = "known"

    def __post_init__(self) -> None:
        if isinstance(self.idm, dict):
            self.idm = IDMParams(**self.idm)
        for name in (
            "max_decel",
            "lateral_accel",
            "lane_change_s",
            "horizon_s",
            "forecast_dt",
            "perception_m",
        ):
            check_positive(f"ExpertConfig.{name}", getattr(self, name))
        check_choice("ExpertConfig.other_routes", self.other_routes, ROUTES)


@dataclass
class _Leader:
    gap: float  # bumper to bumper [m] along the path
    speed: float  # along the path [m/s]


class ExpertPolicy:
    """Privileged rule-based driver. `reset` needs `EpisodeInfo.env` = the `driving.world.World`."""

    name = "expert"

    def __init__(self, config: ExpertConfig | None = None) -> None:
        self.config = config or ExpertConfig()
        self.world = None

    def identity(self) -> str:
        """The expert's settings as a digest (episode records carry it)."""
        from dataclasses import asdict

        from automot.digest import state_digest

        return state_digest(None, {"expert": asdict(self.config)})

    def reset(self, episode: EpisodeInfo) -> None:
        if episode.env is None or not hasattr(episode.env, "route"):
            raise ValueError(
                "ExpertPolicy.reset: expected EpisodeInfo.env to be a driving.world.World, got None"
            )
        self.world = episode.env
        self._target: tuple[int, int] | None = None
        self._cooldown_until = -math.inf
        self.last_info: dict = {}

    # ------------------------------------------------------------------ planning
    def plan(self, observation: Observation) -> PolicyOutput:
        if self.world is None:
            raise ValueError("ExpertPolicy.plan: expected reset() first")
        world, c = self.world, self.config
        env = world.env
        ego = env.vehicle
        network = env.road.network
        speed = max(float(ego.speed), 0.0)
        now = world.time_s

        edge = self._current_edge()
        lane_id = self._lane_on_edge(edge)
        target = self._choose_lane(edge, lane_id, speed, now)
        chain, dead_end = self._chain(edge, target)
        path_len = max(8.0 * speed + 20.0, 60.0)
        path, limits = self._path(chain, speed, path_len)

        others = [
            o
            for o in [*env.road.vehicles, *env.road.objects]
            if o is not ego
            and getattr(o, "solid", True)
            and np.linalg.norm(o.position - ego.position) < c.perception_m
        ]
        times = np.arange(0.0, c.horizon_s + 1e-9, c.forecast_dt)
        fc = forecast(network, others, times, routes=c.other_routes)
        hits = corridor_hits(fc, path, arc_length(path)[-1], ego.WIDTH, c.corridor_margin_m)
        if dead_end is not None:
            # A lane that ends is a speed limit falling to zero there, not a stopped leader: IDM would brake for
            # it from far away, while a merging driver keeps speed to find a gap and brakes only when it must.
            limits[max(int(dead_end - ego.LENGTH / 2 - c.stop_margin_m), 0) :] = 0.0
        leaders, yielding = self._leaders(fc, hits, times, speed, limits, ego.LENGTH)

        s_t, v_t = self._rollout(speed, leaders, limits)
        pose = world.ego_pose
        wp_times = np.array(spec.waypoint_times_s())
        s_wp = np.interp(wp_times, s_t[0], s_t[1])
        waypoints = pose.to_local(interpolate_polyline(path, s_wp))
        # The plan's speed and heading at the waypoint times: what meta-action labels are cut from.
        v_wp = np.interp(wp_times, s_t[0], v_t)
        ahead = interpolate_polyline(path, s_wp + 0.5) - interpolate_polyline(
            path, np.maximum(s_wp - 0.5, 0.0)
        )
        h_wp = pose.heading_to_local(np.arctan2(ahead[:, 1], ahead[:, 0]))
        route_pts = pose.to_local(
            interpolate_polyline(path, spec.ROUTE_SPACING_M * np.arange(1, spec.NUM_ROUTE_POINTS + 1))
        )
        self.last_info = {
            "edge": edge,
            "lane": lane_id,
            "target_lane": target,
            "yielding": yielding,
            "speed_plan": v_t,
        }
        return PolicyOutput(
            waypoints=waypoints.astype(np.float32),
            route=route_pts.astype(np.float32),
            info={
                "target_lane": target,
                "yielding": yielding,
                "waypoint_speeds": v_wp.astype(np.float32),  # (6,) m/s
                "waypoint_headings": np.asarray(h_wp, dtype=np.float32),  # (6,) rad, ego frame, left +
            },
        )

    # ------------------------------------------------------------------ lanes
    def _current_edge(self) -> int:
        route = self.world.route
        idx = route.edge_index(self.world.ego.lane_index)
        if idx is not None:
            return idx
        s = self.world.progress.current_s
        return int(np.clip(np.searchsorted(route.edge_start_s, s, side="right") - 1, 0, len(route.edges) - 1))

    def _lanes(self, edge: int) -> list:
        a, b = self.world.route.edges[edge]
        return self.world.env.road.network.graph[a][b]

    def _lane_on_edge(self, edge: int) -> int:
        position = self.world.ego.position
        lanes = self._lanes(edge)
        return int(np.argmin([abs(lane.local_coordinates(position)[1]) for lane in lanes]))

    def _allowed(self, edge: int, lane_id: int) -> bool:
        lanes = self._lanes(edge)
        return 0 <= lane_id < len(lanes) and (
            not lanes[lane_id].forbidden or lane_id == self.world.route.lanes[edge]
        )

    def _chain(self, edge: int, lane_id: int) -> tuple[list, float | None]:
        """Lane indices from (edge, lane_id) along the route; the arc length where it dead-ends, if it does.

        Like highway-env's `next_lane`: the same lane id when the next road has as many lanes; else, when
        the road widens (a roundabout entry) the route's lane, and when it narrows the nearest lane. An
        auxiliary (forbidden) lane with no same-id continuation ends: the merge lane.
        """
        route = self.world.route
        network = self.world.env.road.network
        chain = [(*route.edges[edge], lane_id)]
        first = network.get_lane(chain[0])
        length = first.length - first.local_coordinates(self.world.ego.position)[0]
        for e in range(edge + 1, len(route.edges)):
            prev_lanes = self._lanes(e - 1)
            prev = prev_lanes[chain[-1][2]]
            lanes = self._lanes(e)
            current_id = chain[-1][2]
            if len(lanes) == len(prev_lanes):
                nxt = current_id
            elif prev.forbidden and current_id >= len(lanes):
                return chain, length
            elif len(lanes) > len(prev_lanes):
                nxt = route.lanes[e]
            else:
                end = prev.position(prev.length, 0.0)
                nxt = int(np.argmin([np.linalg.norm(lane.position(0.0, 0.0) - end) for lane in lanes]))
            chain.append((*route.edges[e], nxt))
            length += lanes[nxt].length
        return chain, None

    def _continues(self, edge: int, lane_id: int) -> bool:
        return self._chain(edge, lane_id)[1] is None

    def _choose_lane(self, edge: int, lane_id: int, speed: float, now: float) -> int:
        c = self.config
        route = self.world.route
        if self._target is not None:
            t_edge, t_lane = self._target
            if t_edge == edge:
                lane = self._lanes(edge)[t_lane]
                _, r = lane.local_coordinates(self.world.ego.position)
                if abs(r) < 0.6:
                    self._target = None
                    self._cooldown_until = now + c.lane_change_cooldown_s
                    return t_lane
                return t_lane
            self._target = None
        desired = lane_id
        if not self._continues(edge, lane_id):  # mandatory: this lane ends before the route does
            options = [
                i
                for i in range(len(self._lanes(edge)))
                if self._allowed(edge, i) and self._continues(edge, i)
            ]
            if options:
                desired = min(options, key=lambda i: abs(i - lane_id))
        elif not self.world.scenario.discretionary_lane_changes:
            ref = route.lanes[edge]
            desired = ref if self._continues(edge, ref) else lane_id
        if desired != lane_id:
            step = 1 if desired > lane_id else -1
            candidate = lane_id + step
            if self._gap(edge, candidate, speed) is not None:
                self._target = (edge, candidate)
                return candidate
            return lane_id
        if self.world.scenario.discretionary_lane_changes and now >= self._cooldown_until:
            current = self._gap(edge, lane_id, speed, check=False)
            a_cur = idm_accel(
                speed, self._desired_speed(), [current.leader] if current and current.leader else [], c.idm
            )
            best, best_gain = lane_id, 0.0
            for candidate in (lane_id - 1, lane_id + 1):
                if not self._allowed(edge, candidate) or not self._continues(edge, candidate):
                    continue
                gap = self._gap(edge, candidate, speed)
                if gap is None:
                    continue
                a_new = idm_accel(speed, self._desired_speed(), [gap.leader] if gap.leader else [], c.idm)
                threshold = c.lane_change_gain * (0.5 if candidate > lane_id else 1.0)
                if a_new - a_cur > threshold + best_gain:
                    best, best_gain = candidate, a_new - a_cur - threshold
            if best != lane_id:
                self._target = (edge, best)
                return best
        return lane_id

    def _gap(self, edge: int, lane_id: int, speed: float, check: bool = True) -> LaneGap | None:
        """Neighbours on lane (edge, lane_id); None when `check` and changing into it is unsafe."""
        c = self.config
        if not 0 <= lane_id < len(self._lanes(edge)):
            return None
        lane = self._lanes(edge)[lane_id]
        ego = self.world.ego
        others = [o for o in self.world.env.road.vehicles + self.world.env.road.objects if o is not ego]
        leader = follower = None
        follower_desired = 30.0
        if others:
            s, r = lane_coordinates(lane, np.array([o.position for o in others]))
            s_ego = lane.local_coordinates(ego.position)[0]
            for o, so, ro in zip(others, s, r):
                if abs(ro) > lane.width_at(so) / 2 + 0.5:
                    continue
                gap = abs(so - s_ego) - (o.LENGTH + ego.LENGTH) / 2
                if so >= s_ego and (leader is None or gap < leader[0]):
                    leader = (gap, float(o.speed))
                elif so < s_ego and (follower is None or gap < follower[0]):
                    follower = (gap, float(o.speed))
                    follower_desired = float(getattr(o, "target_speed", o.speed))
        result = LaneGap(leader=leader, follower=follower, follower_desired_speed=follower_desired)
        if check and not lane_change_safe(
            speed, self._desired_speed(), result, c.lane_change_safe_decel, c.idm
        ):
            return None
        return result

    def _desired_speed(self) -> float:
        return float(self.world.scenario.cruise_speed)

    # ------------------------------------------------------------------ path and speed
    def _path(self, chain: list, speed: float, length: float) -> tuple[np.ndarray, np.ndarray]:
        """Display-frame path (M, 2) from the ego along `chain`, 1 m apart, and the speed limit at each point."""
        network = self.world.env.road.network
        ego = self.world.ego
        c = self.config
        k_lane, lane = 0, network.get_lane(chain[0])
        s0, r0 = lane.local_coordinates(ego.position)
        # Past the end of the chain's first lane (the route edge is found from progress while highway-env
        # files the ego under another lane of the junction), start on the lane the ego has reached: walking
        # from the first lane would apply the node-gap correction at the ego and put the plan behind it.
        while s0 > lane.length and k_lane + 1 < len(chain):
            k_lane += 1
            lane = network.get_lane(chain[k_lane])
            s0, r0 = lane.local_coordinates(ego.position)
        blend = max(speed * c.lane_change_s, 15.0) if abs(r0) > 1.0 else max(speed * 1.0, 8.0)
        points, limits = [], []
        correction = np.zeros(2)
        fade_len = 10.0
        s, walked, since_join = s0, 0.0, math.inf
        while walked <= length:
            while s > lane.length and k_lane + 1 < len(chain):
                nxt = network.get_lane(chain[k_lane + 1])
                jump = lane.position(lane.length, 0.0) - nxt.position(0.0, 0.0)
                # highway-env joins roads by node, not by geometry (5.6 m at the roundabout): blend over the jump.
                correction = correction * _smooth_fade(since_join, fade_len) + jump
                fade_len = max(10.0, 3.0 * float(np.linalg.norm(correction)))
                s -= lane.length
                k_lane += 1
                lane = nxt
                since_join = 0.0
            u = min(walked / blend, 1.0)
            r = r0 * (1.0 - u * u * (3 - 2 * u))
            points.append(lane.position(s, r) + correction * _smooth_fade(since_join, fade_len))
            limit = lane.speed_limit if lane.speed_limit is not None else 30.0
            limits.append(min(limit, self._desired_speed()))
            s += 1.0
            walked += 1.0
            since_join += 1.0
        path = world_to_display(np.array(points))
        path[0] = world_to_display(ego.position)
        curve = np.sqrt(c.lateral_accel / np.maximum(_path_curvature(path), 1e-6))
        return path, np.minimum(np.array(limits), curve)

    def _leaders(self, fc, hits, times, speed, limits, ego_length) -> tuple[list[_Leader], bool]:
        c = self.config
        entry = self._junction_entry()
        leaders: list[_Leader] = []
        yielding = False
        if not len(fc.objects):
            return leaders, yielding
        # The ego's free motion, to time conflicts: accelerate at max_accel up to the limit.
        v_cap = float(limits[: max(int(speed * 3), 10)].min())
        v_free = np.minimum(speed + c.idm.max_accel * times, max(v_cap, speed))
        s_free = np.concatenate([[0.0], np.cumsum((v_free[1:] + v_free[:-1]) / 2 * np.diff(times))])
        stop_dist = speed * speed / (2 * c.max_decel)
        for i in range(len(fc.objects)):
            inside = hits.inside[i]
            if not inside.any():
                continue
            rel0 = hits.rel[i, 0]
            aligned0 = abs(math.remainder(rel0, 2 * math.pi)) < math.radians(35)
            front0 = hits.s[i, 0] - hits.ext_along[i, 0] - ego_length / 2
            if inside[0]:
                if hits.s[i, 0] <= 0.0 and aligned0:
                    continue  # a follower in our lane
                moving = fc.speeds[i] > 0.1
                if front0 > 0.0 or (moving and hits.s[i, 0] > 0.0):
                    # Ahead, or a vehicle ahead of our centre cutting in alongside: brake.
                    along = fc.speeds[i] * math.cos(rel0) if aligned0 else 0.0
                    leaders.append(_Leader(gap=max(front0, 0.1), speed=max(along, 0.0)))
                continue  # a static object alongside, or anything behind our centre: braking cannot help
            ks = np.nonzero(inside)[0]
            delta = hits.s[i, ks] - s_free[ks]
            margin = ego_length / 2 + hits.ext_along[i, ks] + c.conflict_margin_m
            margin = margin + c.conflict_margin_s * np.maximum(v_free[ks], fc.speeds[i])
            close = np.abs(delta) < margin
            if not close.any():
                continue
            k = ks[np.argmax(close)]
            aligned = abs(math.remainder(hits.rel[i, k], 2 * math.pi)) < math.radians(35)
            if delta[np.argmax(close)] <= 0 and (aligned or hits.s[i, 0] < 0):
                continue  # it comes from behind and we would be past: braking cannot help
            if aligned and front0 > 0:
                leaders.append(_Leader(gap=front0, speed=max(fc.speeds[i] * math.cos(rel0), 0.0)))
                continue
            zone = float(np.min(hits.s[i, ks] - hits.ext_along[i, ks]))
            stop_at = zone - ego_length / 2 - c.stop_margin_m
            if entry is not None:
                if entry < 0.0:
                    continue  # inside the junction: committed, clear it rather than stop across a lane
                stop_at = min(stop_at, entry - ego_length / 2 - 1.0)
            if stop_at > stop_dist * 0.8 or (stop_at > 0.5 and speed < 1.0):
                leaders.append(_Leader(gap=max(stop_at, 0.1), speed=0.0))
                yielding = True
        return leaders, yielding

    def _junction_entry(self) -> float | None:
        """Distance to the start of a junction where the scenario yields only before entering, else None."""
        m = self.world.route.maneuver
        if m is None or not self.world.scenario.yield_before_junction:
            return None
        return float(m.s_start - self.world.progress.current_s)

    def _rollout(
        self, speed: float, leaders: list[_Leader], limits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Integrate IDM for the waypoint horizon; returns ((times, arc lengths), speeds)."""
        c = self.config
        dt = 0.25
        n = round(spec.NUM_WAYPOINTS * spec.WAYPOINT_DT_S / dt)
        idx = np.arange(len(limits))
        ts, ss, vs = [0.0], [0.0], [speed]
        s, v = 0.0, speed
        for k in range(n):
            t = k * dt
            ahead = idx >= int(s)
            allowed = np.sqrt(limits[ahead] ** 2 + 2 * c.idm.comfort_decel * np.maximum(idx[ahead] - s, 0.0))
            v_des = float(allowed.min()) if allowed.size else float(limits[-1])
            current = [(ld.gap + ld.speed * t - s, ld.speed) for ld in leaders]
            a = idm_accel(v, v_des, current, c.idm)
            a = float(np.clip(a, -c.max_decel, c.idm.max_accel))
            v_next = max(v + a * dt, 0.0)
            s += (v + v_next) / 2 * dt
            v = v_next
            ts.append(t + dt)
            ss.append(s)
            vs.append(v)
        return np.array([ts, ss]), np.array(vs)


def _smooth_fade(distance: float, length: float) -> float:
    """1 at distance 0, 0 from `length` on, smoothstep in between."""
    if distance >= length:
        return 0.0
    u = 1.0 - distance / length
    return u * u * (3.0 - 2.0 * u)


def _path_curvature(path: np.ndarray, base: int = 3) -> np.ndarray:
    """Curvature (M,) of a path sampled every metre, from headings over `base` metres each side, smoothed."""
    n = len(path)
    if n < 2 * base + 1:
        return np.zeros(n)
    d = path[2 * base :] - path[: -2 * base]
    heading = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
    kappa = np.abs(np.gradient(heading))  # per metre
    kappa = np.convolve(np.pad(kappa, 2, mode="edge"), np.ones(5) / 5, mode="valid")
    return np.concatenate([np.full(base, kappa[0]), kappa, np.full(base, kappa[-1])])
