"""Turn signals of the other vehicles: what a camera would show of where a car at a junction will go.

highway-env's vehicles follow planned routes but do not signal, so at a junction nothing in the
sensors tells which way a car will turn, while the privileged expert reads the route
(`driving.prediction`, routes="known"). With `BEVConfig.turn_signals` the BEV shows it the way real
cars do: a vehicle that will turn at its next junction within `lookahead_m` (or is turning there
now) shows a blinker, a small box beside its front corner on the side it turns to, painted into
the `vehicles` channel. The labels, the collision checks and the expert do not see the blinkers.

A junction is a lane end with a choice (more than one road leaves its end node, the way back not
counted); the turn is the heading change over the lane the vehicle takes from there; under
`min_turn_deg` it goes straight and does not signal.

Frames: `signal_side` works in highway-env's world frame (its sign is the direction the heading
rotates); the blinker boxes are returned in the display frame, like `ObjectState.boxes`.
"""

from __future__ import annotations

import numpy as np

from driving.geometry import heading_to_display, world_to_display, wrap_angle

BLINKER_LENGTH_M = 2.0  # along the car, at its front
BLINKER_WIDTH_M = 1.5  # beside the car
# Signal this far ahead of the junction: the expert forecasts 5 s ahead, about 50 m at the
# intersection's speeds, so every route it reads is signalled before it matters.
LOOKAHEAD_M = 50.0


def signal_side(vehicle, network, lookahead_m: float = LOOKAHEAD_M, min_turn_deg: float = 30.0) -> int:
    """+1 / -1: the vehicle turns at its next junction (the sign of its heading change in the world
    frame), 0: no signal (it goes straight there, has no route, or the junction is farther away)."""
    lane_index = getattr(vehicle, "target_lane_index", None)
    route = getattr(vehicle, "route", None)
    if lane_index is None or not route:
        return 0
    route = list(route)  # `next_lane` consumes it as it goes
    lane = network.get_lane(lane_index)
    s, _ = lane.local_coordinates(vehicle.position)
    start = -float(s)  # distance from the vehicle to the start of the lane considered (<= 0: on it)
    min_turn = np.deg2rad(min_turn_deg)
    for _ in range(8):  # a handful of lanes always covers the lookahead on these maps
        if start > lookahead_m:
            return 0
        if _starts_at_fork(network, lane_index):
            turn = wrap_angle(lane.heading_at(lane.length) - lane.heading_at(0.0))
            if abs(turn) >= min_turn:
                return int(np.sign(turn))
            if start > 0:
                return 0  # straight on at the next junction
        start += lane.length
        nxt = network.next_lane(lane_index, route=route, position=lane.position(lane.length, 0.0))
        if nxt == lane_index:
            return 0
        lane_index, lane = nxt, network.get_lane(nxt)
    return 0


def _starts_at_fork(network, lane_index) -> bool:
    """Does more than one road leave this lane's start node (the way back to where it came from not
    counted, for every road that leads there)?"""
    node = lane_index[0]
    outs = set(network.graph.get(node, {}))
    preds = [a for a, roads in network.graph.items() if node in roads]
    if not preds:
        return len(outs) > 1
    return any(len(outs - {p}) > 1 for p in preds)


def blinker_box(vehicle, side: int) -> np.ndarray:
    """(5,) display-frame box (x, y, heading, length, width) of the blinker beside the vehicle's front
    corner on `side` (+1 / -1 as from `signal_side`)."""
    h = float(vehicle.heading)
    fwd = np.array([np.cos(h), np.sin(h)])
    toward = np.array([np.cos(h + side * np.pi / 2), np.sin(h + side * np.pi / 2)])
    centre = (
        np.asarray(vehicle.position, dtype=np.float64)
        + (vehicle.LENGTH / 2 - BLINKER_LENGTH_M / 2) * fwd
        + (vehicle.WIDTH / 2 + BLINKER_WIDTH_M / 2) * toward
    )
    x, y = world_to_display(centre)
    return np.array([x, y, heading_to_display(h), BLINKER_LENGTH_M, BLINKER_WIDTH_M])
