"""The closed vocabulary the embedded world speaks (navigation prompts and scene descriptions).

The world (`driving.language`) writes only these words, and the offline word-level tokenizer of the
tiny understanding expert (`mot.qwen_offline`) contains every one of them, so scene pretraining
never sees an unknown token. Numbers are written rounded to 5 (metres, km/h).
"""

from __future__ import annotations

NUMBER_MAX = 500
NUMBERS: tuple[str, ...] = tuple(str(v) for v in range(0, NUMBER_MAX + 1, 5))
WORDS: tuple[str, ...] = (
    ".", "absent", "ahead", "command", "exit", "faster", "first", "follow", "for", "free", "go", "in",
    "intersection", "lane", "lead", "left", "merge", "metres", "no", "now", "junction", "occupied", "right",
    "road", "roundabout", "same", "second", "slower", "speed", "straight", "take", "the", "third", "turn",
    "vehicle",
)  # fmt: skip
WORLD_VOCABULARY: tuple[str, ...] = tuple(sorted(WORDS)) + NUMBERS
