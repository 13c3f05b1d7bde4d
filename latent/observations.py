"""What a latent action model looks at: a registry of observation kinds, each cut from a shard's
observation fields (never a label field) as a float image in [0, 1].

Axes: C channels, H/W image size.

- "bev": the BEV raster (C = 4, `spec.BEV_CHANNELS`), ego-centred and ego-aligned, so ego motion
  shows as the whole scene shifting and turning, other agents as boxes moving against it.
- "rgb": the current camera frame (C = 3), bytes / 255.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from automot import spec
from automot.registry import Registry


@dataclass(frozen=True)
class ObservationKind:
    """channels: C; size(dims) -> (H, W) from a dataset's dims; fields: the shard fields it reads;
    cut(arrays, rows) -> (N, C, H, W) float32 in [0, 1] for the sample rows `rows`."""

    channels: int
    size: Callable[[dict[str, int]], tuple[int, int]]
    fields: tuple[str, ...]
    cut: Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]


OBSERVATIONS: Registry[ObservationKind] = Registry("latent observation")


@OBSERVATIONS.register("bev")
def _bev() -> ObservationKind:
    return ObservationKind(
        channels=len(spec.BEV_CHANNELS),
        size=lambda dims: (dims["Hb"], dims["Wb"]),
        fields=("bev",),
        cut=lambda arrays, rows: arrays["bev"][rows].astype(np.float32),
    )


@OBSERVATIONS.register("rgb")
def _rgb() -> ObservationKind:
    return ObservationKind(
        channels=3,
        size=lambda dims: (dims["H"], dims["W"]),
        fields=("frames", "rgb_idx"),
        cut=lambda arrays, rows: arrays["frames"][arrays["rgb_idx"][rows]].astype(np.float32) / 255.0,
    )


def observation_kind(name: str) -> ObservationKind:
    return OBSERVATIONS.build(name)
