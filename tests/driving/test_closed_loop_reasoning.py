"""Closed-loop records keep the policy's reasoning text (issue 12): each new text with its step."""

from __future__ import annotations

import numpy as np

from automot import spec
from automot.types import PolicyOutput
from driving import build_scenario, split_seeds
from driving.closed_loop import run_episode
from driving.controller import Tracker
from driving.world import World


class TalkingPolicy:
    """Creeps forward; its "reasoning" changes every second step, like a UE refreshed with k = 2."""

    name = "talking"

    def reset(self, episode) -> None:
        self.n = 0

    def plan(self, observation):
        text = f"thought {self.n // 2}"
        self.n += 1
        times = np.array(spec.waypoint_times_s())
        wp = np.stack([2.0 * times, np.zeros_like(times)], axis=1).astype(np.float32)
        return PolicyOutput(waypoints=wp, reasoning=text)


def test_reasoning_text_is_recorded_each_time_it_changes():
    world = World(build_scenario("highway", density=0.0, duration_s=2.0))
    try:
        record = run_episode(TalkingPolicy(), world, split_seeds("test", 1)[0], Tracker())
    finally:
        world.close()
    texts = record.extra["reasoning"]
    assert [t["text"] for t in texts] == [f"thought {i}" for i in range(len(texts))]
    assert len(texts) >= 3 and texts[0]["step"] == 0
    gaps = np.diff([t["step"] for t in texts])
    assert (gaps > 0).all() and len(set(gaps.tolist())) == 1  # every second plan, evenly spaced
    # The record survives its JSON round trip (it is written to the episodes file).
    from driving.scoring import EpisodeRecord

    again = EpisodeRecord.from_json(record.to_json())
    assert again.extra["reasoning"] == texts
