"""Reading a collected dataset back: a PyTorch `Dataset` of samples and the `DrivingBatch` they collate into.

Axes: B batch, T history frames (4), V views (1), H/W image, C BEV channels (4), Hb/Wb BEV raster,
K decision horizons (3), A agents (LabelConfig.max_agents).

`DrivingBatch`:
    sensors        automot.types.SensorBatch: rgb_history (B, T, V, 3, H, W) uint8, rgb (B, 3, H, W) uint8,
                   bev (B, C, Hb, Wb) float32 in {0, 1}, ego_state (B, 3), ego_history (B, 4, 4),
                   target_point (B, 2), prompts list[str] (B)
    waypoints      (B, 6, 2) float32, ego frame, 0.5 s apart
    route          (B, 20, 2) float32, ego frame, 2 m apart
    lateral        (B, K) int64, indices into spec.LATERAL_ACTIONS
    longitudinal   (B, K) int64, indices into spec.LONGITUDINAL_ACTIONS
    longitudinal3  (B, K) int64, indices into spec.LONGITUDINAL_ACTIONS_3
    agent_boxes    (B, 6, A, 5) float32 (x, y, heading, length, width) at the waypoint times, ego frame
    agent_mask     (B, 6, A) bool, True = a real agent
    ego_size       (B, 2) float32 (length, width)
    scene_text     list[str] (B)
    meta           dict of lists (B): scenario, seed, step, ue_step (ue_step < step: an asynchronous sample),
                   shard (the shard's sha256; samples of a DrivingDataset)

Shards are verified against the index (sha256, sizes) when first read; a corrupt or mismatched shard
raises ValueError naming the file. A dataset declares whether it is labeled (`index_is_labeled`); this
`Dataset` yields expert labels, so it refuses an observations-only one (read those with
`latent.data.TransitionDataset`).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from automot import spec
from automot.checks import check_tensor
from automot.types import SensorBatch
from driving.collect import INDEX_NAME
from driving.config import BEV_OPTIONS, BEVConfig
from driving.shards import FORMAT_VERSION, read_shard


@dataclass
class DrivingBatch:
    sensors: SensorBatch
    waypoints: torch.Tensor
    route: torch.Tensor
    lateral: torch.Tensor
    longitudinal: torch.Tensor
    longitudinal3: torch.Tensor
    agent_boxes: torch.Tensor
    agent_mask: torch.Tensor
    ego_size: torch.Tensor
    scene_text: list[str] = field(default_factory=list)
    meta: dict[str, list] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return self.sensors.batch_size

    def validate(self) -> DrivingBatch:
        self.sensors.validate()
        dims = {"B": self.batch_size}
        k = len(spec.DECISION_HORIZONS_S)
        check_tensor("DrivingBatch.waypoints", self.waypoints, ("B", spec.NUM_WAYPOINTS, 2), dims=dims)
        check_tensor("DrivingBatch.route", self.route, ("B", spec.NUM_ROUTE_POINTS, 2), dims=dims)
        for name in ("lateral", "longitudinal", "longitudinal3"):
            check_tensor(f"DrivingBatch.{name}", getattr(self, name), ("B", k), dims=dims, dtype=torch.int64)
        check_tensor(
            "DrivingBatch.agent_boxes", self.agent_boxes, ("B", spec.NUM_WAYPOINTS, "A", 5), dims=dims
        )
        check_tensor(
            "DrivingBatch.agent_mask",
            self.agent_mask,
            ("B", spec.NUM_WAYPOINTS, "A"),
            dims=dims,
            dtype=torch.bool,
        )
        check_tensor("DrivingBatch.ego_size", self.ego_size, ("B", 2), dims=dims)
        if len(self.scene_text) != dims["B"]:
            raise ValueError(
                f"DrivingBatch.scene_text: expected {dims['B']} strings, got {len(self.scene_text)}"
            )
        return self

    def to(self, device: torch.device | str) -> DrivingBatch:
        return DrivingBatch(
            sensors=self.sensors.to(device),
            waypoints=self.waypoints.to(device),
            route=self.route.to(device),
            lateral=self.lateral.to(device),
            longitudinal=self.longitudinal.to(device),
            longitudinal3=self.longitudinal3.to(device),
            agent_boxes=self.agent_boxes.to(device),
            agent_mask=self.agent_mask.to(device),
            ego_size=self.ego_size.to(device),
            scene_text=list(self.scene_text),
            meta={k: list(v) for k, v in self.meta.items()},
        )


# One sample as the Dataset returns it: tensors without the batch axis, plus strings and meta.
Sample = dict


def collate(samples: list[Sample]) -> DrivingBatch:
    """Stack samples from `DrivingDataset` into a validated `DrivingBatch`."""
    if not samples:
        raise ValueError("collate: expected at least one sample, got an empty list")

    def stack(name: str) -> torch.Tensor:
        return torch.stack([s[name] for s in samples])

    sensors = SensorBatch(
        rgb_history=stack("rgb_history"),
        rgb=stack("rgb"),
        bev=stack("bev"),
        ego_state=stack("ego_state"),
        ego_history=stack("ego_history"),
        target_point=stack("target_point"),
        prompts=[s["prompt"] for s in samples],
    )
    return DrivingBatch(
        sensors=sensors,
        waypoints=stack("waypoints"),
        route=stack("route"),
        lateral=stack("lateral"),
        longitudinal=stack("longitudinal"),
        longitudinal3=stack("longitudinal3"),
        agent_boxes=stack("agent_boxes"),
        agent_mask=stack("agent_mask"),
        ego_size=stack("ego_size"),
        scene_text=[s["scene_text"] for s in samples],
        meta={k: [s["meta"][k] for s in samples] for k in _meta_keys(samples)},
    ).validate()


def _meta_keys(samples: list[Sample]) -> tuple[str, ...]:
    # "shard" (the sample's shard sha256, set by DrivingDataset) names the data a sample came from,
    # for stores keyed by content (training.ue_store); batches of samples built elsewhere lack it.
    keys = ("scenario", "seed", "step", "ue_step")
    return (*keys, "shard") if all("shard" in s["meta"] for s in samples) else keys


def read_index(root: str | Path) -> dict:
    root = Path(root)
    path = root / INDEX_NAME
    if not path.exists():
        raise ValueError(
            f"dataset {root}: expected an {INDEX_NAME} (written by `automot collect`), found none"
        )
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: expected JSON, got unreadable content ({err})") from err
    if index.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: expected format_version {FORMAT_VERSION}, got {index.get('format_version')!r}"
        )
    for key in ("episodes", "dims", "config"):
        if key not in index:
            raise ValueError(f"{path}: expected a {key!r} entry, it is missing")
    return index


def index_is_labeled(index: dict) -> bool:
    """Whether a dataset index declares expert labels (indexes written before the flag existed are)."""
    labeled = index.get("labeled", True)
    if not isinstance(labeled, bool):
        raise ValueError(f"dataset index: expected 'labeled' to be true or false, got {labeled!r}")
    return labeled


def index_bev_options(index: dict) -> dict:
    """What a dataset's BEV shows (`BEV_OPTIONS`: blinkers, motion trails), from the collection's
    config or the collection config inside an on-policy round's; an option the index does not record
    has its default (`BEV_OPTIONS`), what the data was collected with."""
    config = index.get("config", {})
    config = config.get("collect", config)
    recorded = config.get("sensors", {}).get("bev", {})
    options = {name: recorded.get(name, default) for name, default in BEV_OPTIONS.items()}
    try:
        BEVConfig.from_options(options)
    except ValueError as err:
        raise ValueError(f"dataset index: sensors.bev: {err}") from None
    return options


def index_turn_signals(index: dict) -> bool:
    """Whether a dataset's BEV shows the other vehicles' blinkers (`BEVConfig.turn_signals`)."""
    return index_bev_options(index)["turn_signals"]


class DrivingDataset(Dataset):
    """Samples of a dataset written by `automot collect` (one or more directories with the same sizes).

    `scenarios` keeps only those scenarios. Shards are loaded lazily and kept in memory (per DataLoader
    worker): all of them by default (a shuffled epoch touches every shard again and again), or the
    `cache_shards` most recent.
    """

    def __init__(
        self, roots: str | Path | list, scenarios: list[str] | None = None, cache_shards: int | None = None
    ) -> None:
        roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
        if not roots:
            raise ValueError("DrivingDataset.roots: expected at least one dataset directory, got none")
        self.episodes: list[tuple[Path, dict]] = []
        self.dims: dict[str, int] | None = None
        self.bev_options: dict | None = None  # what the BEV shows (the same in every directory)
        for root in roots:
            index = read_index(root)
            options = index_bev_options(index)
            if self.bev_options is None:
                self.bev_options = options
            for name, value in options.items():
                if value != self.bev_options[name]:
                    raise ValueError(
                        f"dataset {root}: expected sensors.bev.{name}={self.bev_options[name]} like the "
                        f"first directory, got {value}"
                    )
            if self.dims is None:
                self.dims = dict(index["dims"])
            elif dict(index["dims"]) != self.dims:
                raise ValueError(
                    f"dataset {root}: expected sizes {self.dims} like the first directory, got {index['dims']}"
                )
            if not index.get("complete", False):
                raise ValueError(
                    f"dataset {root}: expected a complete collection, the index says it is unfinished"
                )
            if not index_is_labeled(index):
                raise ValueError(
                    f"dataset {root}: expected a labeled dataset (DrivingDataset yields expert labels), got an "
                    "observations-only one; read it with latent.data.TransitionDataset"
                )
            for entry in index["episodes"]:
                if scenarios is None or entry["scenario"] in scenarios:
                    self.episodes.append((Path(root), entry))
        seen: dict[tuple[str, int], Path] = {}
        for root, entry in self.episodes:
            key = (entry["scenario"], int(entry["seed"]))
            if key in seen:
                # A sample is identified by (scenario, seed, step) downstream (the UE memo, metrics):
                # two episodes with one identity would silently share cached inputs.
                raise ValueError(
                    f"dataset {root}: expected each (scenario, seed) episode once across directories, got "
                    f"{key} again (also in {seen[key]}); collect aggregated data with its own seeds"
                )
            seen[key] = root
        counts = np.array([e["samples"] for _, e in self.episodes], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self._cache: OrderedDict[int, dict] = OrderedDict()
        if cache_shards is not None and cache_shards < 1:
            raise ValueError(f"DrivingDataset.cache_shards: expected None (all) or >= 1, got {cache_shards}")
        self._cache_size = len(self.episodes) if cache_shards is None else cache_shards

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def turn_signals(self) -> bool:
        """Does the BEV show the other vehicles' blinkers (`BEVConfig.turn_signals`)?"""
        return bool(self.bev_options["turn_signals"])

    def _shard(self, episode: int) -> dict[str, np.ndarray]:
        if episode in self._cache:
            self._cache.move_to_end(episode)
            return self._cache[episode]
        root, entry = self.episodes[episode]
        arrays = read_shard(root / entry["file"], expected_sha256=entry["sha256"], expected_dims=self.dims)
        if len(arrays["step"]) != entry["samples"]:
            raise ValueError(
                f"shard {root / entry['file']}: expected {entry['samples']} samples (from the index), got {len(arrays['step'])}"
            )
        self._cache[episode] = arrays
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return arrays

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < len(self):
            raise IndexError(f"sample index {i} out of range for {len(self)} samples")
        episode = int(np.searchsorted(self._offsets, i, side="right") - 1)
        sample = sample_at(self._shard(episode), i - int(self._offsets[episode]))
        sample["meta"]["shard"] = self.episodes[episode][1]["sha256"]
        return sample


def sample_at(a: dict[str, np.ndarray], row: int, *, labels: bool = True) -> Sample:
    """Sample `row` of a shard's arrays as `collate` expects it; `labels=False` leaves every label field
    out (and never touches those arrays, which an observations-only read does not even load)."""
    frames = a["frames"]
    t = torch.from_numpy
    sample = {
        "rgb_history": t(frames[a["rgb_history_idx"][row]][:, None].copy()),  # (T, V=1, 3, H, W)
        "rgb": t(frames[a["rgb_idx"][row]].copy()),
        "bev": t(a["bev"][row].astype(np.float32)),
        "ego_state": t(a["ego_state"][row].copy()),
        "ego_history": t(a["ego_history"][row].copy()),
        "target_point": t(a["target_point"][row].copy()),
        "prompt": str(a["prompt"][row]),
        "meta": {
            "scenario": str(a["scenario"]),
            "seed": int(a["seed"]),
            "step": int(a["step"][row]),
            "ue_step": int(a["ue_step"][row]),
        },
    }
    if labels:
        for name in (
            "waypoints", "route", "lateral", "longitudinal", "longitudinal3", "agent_boxes", "agent_mask", "ego_size",
        ):  # fmt: skip
            sample[name] = t(a[name][row].copy())
        sample["scene_text"] = str(a["scene_text"][row])
    return sample
