"""Words the world speaks: the navigation prompt and a factual scene description, from simulator state.

Both follow a fixed grammar over a small closed vocabulary (`VOCABULARY`), numbers rounded to 5, so an
offline word-level tokenizer can be built from the list and the tiny understanding expert can be
pretrained on `scene_text` by next-token loss. Sentences (each ends with " ."):

  prompt:      "<command> in <D> metres ." | "<command> now ." | "follow the road for <D> metres ."
  scene text:  "speed <V> ."                                    (ego speed, km/h)
               "lead vehicle <D> metres ahead <slower|faster|same speed> ." | "no lead vehicle ."
               "left lane <free|occupied|absent> ." "right lane <free|occupied|absent> ."
               "<intersection|roundabout|merge> ahead in <D> metres ." | "<kind> now ." | "no junction ahead ."
               "command <prompt without its final ' .'> ."

<command> is one of "turn left", "go straight", "turn right", "take the first|second|third exit",
"merge left". Distances are metres rounded to 5 and clipped to [0, 500]; speeds km/h rounded to 5,
clipped to [0, 200].
"""

from __future__ import annotations

import numpy as np

from automot.vocabulary import NUMBER_MAX, WORLD_VOCABULARY
from driving.geometry import project_to_polyline

# The words themselves live in `automot.vocabulary`, shared with the UE's offline tokenizer.
VOCABULARY = WORLD_VOCABULARY

# Scene-description detection ranges.
LEAD_RANGE_M = 60.0
LANE_BAND_M = 2.0  # lateral band around the ego's offset from the route that counts as "our lane"
ADJACENT_WINDOW_M = (-12.0, 15.0)  # longitudinal window around the ego for adjacent-lane occupancy


def number(value: float, high: int = NUMBER_MAX) -> str:
    """Round to the nearest 5 and clip to [0, high]."""
    return str(int(np.clip(5 * round(float(value) / 5), 0, high)))


def words(text: str) -> list[str]:
    """Split generated text into vocabulary words, raising if one is outside `VOCABULARY`."""
    tokens = text.split()
    unknown = sorted({t for t in tokens if t not in _VOCAB_SET})
    if unknown:
        raise ValueError(
            f"text: expected words from driving.language.VOCABULARY, got unknown words {unknown}"
        )
    return tokens


_VOCAB_SET = frozenset(VOCABULARY)


def navigation_prompt(route, progress_s: float) -> str:
    """The navigation instruction at arc length `progress_s` along `route`."""
    m = route.maneuver
    if m is not None and progress_s < m.s_start:
        return f"{m.command} in {number(m.s_start - progress_s)} metres ."
    if m is not None and progress_s <= m.s_end:
        return f"{m.command} now ."
    return f"follow the road for {number(route.goal_s - progress_s)} metres ."


def scene_text(world, index: int) -> str:
    """A factual description of logged step `index` of `world` (see the module docstring)."""
    state = world.log[index]
    route = world.route
    parts = [f"speed {number(state.speed * 3.6, 200)} ."]
    parts.append(_lead_sentence(state, route))
    parts.extend(_lane_sentences(world, state))
    m = route.maneuver
    if m is not None and state.progress_s < m.s_start:
        parts.append(f"{m.kind} ahead in {number(m.s_start - state.progress_s)} metres .")
    elif m is not None and state.progress_s <= m.s_end:
        parts.append(f"{m.kind} now .")
    else:
        parts.append("no junction ahead .")
    parts.append(f"command {navigation_prompt(route, state.progress_s)}")
    return " ".join(parts)


def _lead_sentence(state, route) -> str:
    boxes = state.objects.boxes
    if len(boxes) == 0:
        return "no lead vehicle ."
    proj = project_to_polyline(np.vstack([state.ego.position, boxes[:, :2]]), route.polyline)
    gap = proj.s[1:] - proj.s[0]
    same_lane = np.abs(proj.d[1:] - proj.d[0]) < LANE_BAND_M
    ahead = same_lane & (gap > 0) & (gap <= LEAD_RANGE_M)
    if not np.any(ahead):
        return "no lead vehicle ."
    k = int(np.argmin(np.where(ahead, gap, np.inf)))
    bumper = gap[k] - boxes[k, 3] / 2 - 2.5  # minus half lengths (ego 5 m)
    along = state.objects.speeds[k] * np.cos(boxes[k, 2] - proj.heading[1 + k])
    relation = (
        "slower" if along < state.speed - 1.0 else "faster" if along > state.speed + 1.0 else "same speed"
    )
    return f"lead vehicle {number(max(bumper, 0.0))} metres ahead {relation} ."


def _lane_sentences(world, state) -> list[str]:
    network = world.env.road.network
    world_pos = state.ego.position * np.array([1.0, -1.0])
    lane_index = network.get_closest_lane_index(world_pos, -state.ego.heading)
    _from, _to, lane_id = lane_index
    lanes = network.graph[_from][_to]
    s_ego, _ = lanes[lane_id].local_coordinates(world_pos)
    others = state.objects.boxes[:, :2] * np.array([1.0, -1.0])
    out = []
    for side, neighbour in (("left", lane_id - 1), ("right", lane_id + 1)):
        if not 0 <= neighbour < len(lanes) or lanes[neighbour].forbidden:
            out.append(f"{side} lane absent .")
            continue
        lane = lanes[neighbour]
        occupied = False
        for p in others:
            s, r = lane.local_coordinates(p)
            if abs(r) <= lane.width_at(s) / 2 and ADJACENT_WINDOW_M[0] <= s - s_ego <= ADJACENT_WINDOW_M[1]:
                occupied = True
                break
        out.append(f"{side} lane {'occupied' if occupied else 'free'} .")
    return out
