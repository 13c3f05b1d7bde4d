"""Prompt and scene text: fixed grammar, closed vocabulary, rounded numbers."""

import numpy as np
import pytest

from driving.language import VOCABULARY, navigation_prompt, number, scene_text, words
from driving.route import Maneuver, Route
from driving.world import World


def test_numbers_round_to_five_and_clip():
    assert [number(v) for v in (0.0, 2.4, 2.6, 12.4, 498.0, 900.0, -3.0)] == [
        "0",
        "0",
        "5",
        "10",
        "500",
        "500",
        "0",
    ]


def test_prompt_before_inside_and_after_the_maneuver():
    route = Route(edges=[("a", "b")], lanes=[0], start_s=0.0, end_s=100.0)
    route.maneuver = Maneuver("intersection", "turn left", 1, 1, s_start=40.0, s_end=60.0)
    route.goal_s = 130.0
    assert navigation_prompt(route, 12.0) == "turn left in 30 metres ."
    assert navigation_prompt(route, 50.0) == "turn left now ."
    assert navigation_prompt(route, 75.0) == "follow the road for 55 metres ."


@pytest.mark.parametrize("name", ["highway", "merge", "roundabout", "intersection"])
def test_generated_text_stays_inside_the_vocabulary(name):
    world = World(name)
    world.reset(2)
    for _ in range(8):
        world.step(np.array([0.2, 0.0]))
    text = scene_text(world, len(world.log) - 1)
    tokens = words(text)
    assert tokens[0] == "speed" and tokens[-1] == "." and "command" in tokens
    assert text.count(" . ") + 1 == 6  # six sentences
    assert set(words(world.observe().prompt)) <= set(VOCABULARY)


def test_unknown_words_are_rejected():
    with pytest.raises(ValueError, match="unknown words"):
        words("turn left at the traffic light .")
    assert len(VOCABULARY) == len(set(VOCABULARY))
