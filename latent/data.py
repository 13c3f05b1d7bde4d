"""Transitions of a collected dataset for latent-action learning: an observation at step t plus the
observations at t + offsets, read with or without labels.

Axes: B batch, K future offsets, C / H / W observation channels and size (`latent.observations`).

`TransitionDataset(roots, offsets_s=(1.0,), labels=False)` reads only observation fields of the
shards (`driving.shards.OBSERVATION_FIELDS`; label arrays are never decompressed), so it works on
observations-only datasets (`automot collect --unlabeled`) and on labeled ones alike. With
`labels=True` (fine-tuning, distillation) it also reads the expert labels and refuses an unlabeled
dataset. The latent stages call `observations_only(batch, who)` on every batch: a batch that
carries labels is refused, so they cannot reach a label by construction.

`TransitionBatch`:
    frames       (B, 1 + K, C, H, W) float32 in [0, 1]: o_t, o_{t+offset_1}, ..., zero where missing
    future_mask  (B, K) bool, True where the future observation exists in the episode
    sensors      automot.types.SensorBatch of step t (None when read with sensors=False)
    meta         dict of lists: scenario, seed, step, ue_step
    driving      driving.dataset.DrivingBatch with the expert labels (labels=True only), else None
    speeds       (B, 1 + K) ego speed (m/s) at t and at each offset, 0 where missing (speeds=True only)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from automot import spec
from automot.types import SensorBatch
from driving.dataset import DrivingBatch, index_is_labeled, read_index, sample_at
from driving.dataset import collate as collate_driving
from driving.shards import LABEL_FIELDS, OBSERVATION_FIELDS, read_shard, write_shard
from latent.observations import observation_kind

_SENSOR_FIELDS = (
    "frames", "rgb_history_idx", "rgb_idx", "bev", "ego_state", "ego_history", "target_point", "prompt", "ue_step",
)  # fmt: skip
_ALWAYS = ("step", "scenario", "seed")
_SPEED = spec.EGO_STATE_FIELDS.index("speed")


@dataclass
class TransitionBatch:
    frames: torch.Tensor
    future_mask: torch.Tensor
    sensors: SensorBatch | None = None
    meta: dict[str, list] = field(default_factory=dict)
    driving: DrivingBatch | None = None
    # (B, K) the ego speed (m/s) at each future offset, read from the future observations' ego state
    # (odometry, not a label); 0 where `future_mask` is False. Only with `future_speed=True`.
    future_speed: torch.Tensor | None = None
    # (B, 1 + K) the ego speed (m/s) at t and at each future offset, from the observations' ego state
    # (the odometry an odometry LAM reads, `LAMConfig.odometry`); 0 where missing. Only with `speeds=True`.
    speeds: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.frames.shape[0]

    def to(self, device: torch.device | str) -> TransitionBatch:
        return TransitionBatch(
            frames=self.frames.to(device),
            future_mask=self.future_mask.to(device),
            sensors=None if self.sensors is None else self.sensors.to(device),
            meta={k: list(v) for k, v in self.meta.items()},
            driving=None if self.driving is None else self.driving.to(device),
            future_speed=None if self.future_speed is None else self.future_speed.to(device),
            speeds=None if self.speeds is None else self.speeds.to(device),
        )


def observations_only(batch: object, who: str) -> TransitionBatch:
    """The guard of the label-free stages: `batch` must be an observations-only TransitionBatch."""
    if isinstance(batch, DrivingBatch) or getattr(batch, "driving", None) is not None:
        raise ValueError(
            f"{who}: expected observations-only batches (latent.data.TransitionBatch read with labels=False), "
            "got a batch carrying expert labels; this stage never reads labels"
        )
    if not isinstance(batch, TransitionBatch):
        raise ValueError(f"{who}: expected a latent.data.TransitionBatch, got {type(batch).__name__}")
    return batch


def select_episodes(entries: list[dict], fraction: float, seed: int) -> list[dict]:
    """A nested, scenario-stratified share of episodes: per scenario a seeded order, interleaved over
    scenarios, the first max(1, round(fraction x N)) taken (so 5 % is inside 10 % is inside 25 %)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"episode_fraction: expected a value in (0, 1], got {fraction}")
    by_scenario: dict[str, list[dict]] = {}
    for e in sorted(entries, key=lambda e: (e["scenario"], e["seed"])):
        by_scenario.setdefault(e["scenario"], []).append(e)
    g = torch.Generator().manual_seed(seed)
    orders = {
        s: [eps[i] for i in torch.randperm(len(eps), generator=g).tolist()]
        for s, eps in sorted(by_scenario.items())
    }
    interleaved = []
    for k in range(max((len(v) for v in orders.values()), default=0)):
        interleaved += [orders[s][k] for s in sorted(orders) if k < len(orders[s])]
    keep = max(1, round(fraction * len(interleaved)))
    chosen = {(e["scenario"], e["seed"]) for e in interleaved[:keep]}
    return [e for e in entries if (e["scenario"], e["seed"]) in chosen]


class TransitionDataset(Dataset):
    """Transitions (o_t, o_{t+offsets}) of one or more collected datasets.

    offsets_s:        future offsets in seconds (whole numbers of the collection's sample steps).
    observation:      "bev" or "rgb" (`latent.observations.OBSERVATIONS`).
    sensors:          also return the step's SensorBatch fields (the action expert's input).
    labels:           also return the expert labels (as `driving`); refuses observations-only data.
    require_future:   keep only samples whose every future exists; else mask the missing ones.
    episode_fraction: keep a nested, stratified share of the episodes (`select_episodes`).
    future_speed:     also return the ego speed at each future offset (from the future steps' ego
                      state, an observation field; needs `sensors`).
    speeds:           also return the ego speed at t and at each offset (the ego state's speed, an
                      observation field; read even with sensors=False): an odometry LAM's input.
    """

    def __init__(
        self,
        roots: str | Path | list,
        *,
        offsets_s: tuple[float, ...] = (1.0,),
        observation: str = "bev",
        sensors: bool = True,
        labels: bool = False,
        require_future: bool = True,
        scenarios: list[str] | None = None,
        episode_fraction: float = 1.0,
        fraction_seed: int = 0,
        future_speed: bool = False,
        speeds: bool = False,
    ) -> None:
        roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
        if not roots:
            raise ValueError("TransitionDataset.roots: expected at least one dataset directory, got none")
        if future_speed and not sensors:
            raise ValueError(
                "TransitionDataset.future_speed: expected sensors=True (the speed is read from the ego state), got sensors=False"
            )
        self.future_speed, self.speeds = bool(future_speed), bool(speeds)
        self.offsets_s = tuple(float(o) for o in offsets_s)
        if not self.offsets_s or min(self.offsets_s) <= 0:
            raise ValueError(f"TransitionDataset.offsets_s: expected positive offsets, got {offsets_s}")
        self.kind = observation_kind(observation)
        self.with_sensors, self.labels, self.require_future = sensors, labels, require_future
        fields = set(self.kind.fields) | set(_ALWAYS)
        if sensors or labels:
            fields |= set(_SENSOR_FIELDS)
        if speeds:
            fields.add("ego_state")
        if labels:
            fields |= set(LABEL_FIELDS)
        elif fields & set(LABEL_FIELDS) or not fields <= set(OBSERVATION_FIELDS):
            raise AssertionError(
                f"an observations-only read would load {sorted(fields - set(OBSERVATION_FIELDS))}"
            )
        self.fields = tuple(sorted(fields))
        self.dims: dict[str, int] | None = None
        entries: list[tuple[Path, dict]] = []
        self.steps_per: tuple[int, ...] | None = None
        for root in roots:
            index = read_index(root)
            if not index.get("complete", False):
                raise ValueError(
                    f"dataset {root}: expected a complete collection, the index says it is unfinished"
                )
            if labels and not index_is_labeled(index):
                raise ValueError(
                    f"dataset {root}: expected a labeled dataset for labels=True, got an observations-only one"
                )
            if self.dims is None:
                self.dims = dict(index["dims"])
            elif dict(index["dims"]) != self.dims:
                raise ValueError(
                    f"dataset {root}: expected sizes {self.dims} like the first directory, got {index['dims']}"
                )
            steps = self._offset_steps(root, index)
            if self.steps_per is not None and steps != self.steps_per:
                raise ValueError(
                    f"dataset {root}: expected offsets of {self.steps_per} policy steps like the first directory, got {steps}"
                )
            self.steps_per = steps
            entries += [
                (Path(root), e) for e in index["episodes"] if scenarios is None or e["scenario"] in scenarios
            ]
        if episode_fraction != 1.0:
            keep = select_episodes([e for _, e in entries], episode_fraction, fraction_seed)
            kept = {(e["scenario"], e["seed"]) for e in keep}
            entries = [(r, e) for r, e in entries if (e["scenario"], e["seed"]) in kept]
        self.episodes = entries
        self.items: list[tuple[int, int, tuple[int, ...]]] = []  # (episode, row, future rows; -1 = missing)
        for k, (root, entry) in enumerate(self.episodes):
            steps_arr = read_shard(root / entry["file"], expected_sha256=entry["sha256"], fields=("step",))[
                "step"
            ]
            row_of = {int(s): r for r, s in enumerate(steps_arr)}
            for r, s in enumerate(steps_arr):
                future = tuple(row_of.get(int(s) + d, -1) for d in self.steps_per)
                if require_future and min(future) < 0:
                    continue
                self.items.append((k, r, future))
        if not self.items:
            raise ValueError(
                f"TransitionDataset: expected at least one transition with futures {self.offsets_s} s in {roots} "
                f"(episode_fraction {episode_fraction}, scenarios {scenarios}), found none"
            )
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    def _offset_steps(self, root, index: dict) -> tuple[int, ...]:
        hz = index["config"].get("sim", {}).get("policy_hz", 4)
        steps = []
        for o in self.offsets_s:
            n = o * hz
            if abs(n - round(n)) > 1e-9:
                raise ValueError(
                    f"TransitionDataset.offsets_s: expected whole numbers of policy steps at {hz} Hz in {root}, got {o} s"
                )
            steps.append(round(n))
        return tuple(steps)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.kind.size(self.dims)

    def __len__(self) -> int:
        return len(self.items)

    def _shard(self, k: int) -> dict[str, np.ndarray]:
        if k not in self._cache:
            root, entry = self.episodes[k]
            self._cache[k] = read_shard(
                root / entry["file"],
                expected_sha256=entry["sha256"],
                expected_dims=self.dims,
                fields=self.fields,
            )
        return self._cache[k]

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"transition index {i} out of range for {len(self)} transitions")
        k, row, future = self.items[i]
        a = self._shard(k)
        rows = np.array([row] + [max(f, 0) for f in future])
        frames = torch.from_numpy(self.kind.cut(a, rows))
        mask = torch.tensor([f >= 0 for f in future])
        frames[1:][~mask] = 0.0
        item = {"frames": frames, "future_mask": mask}
        if self.future_speed or self.speeds:
            speed = a["ego_state"][:, _SPEED]
            speeds = torch.tensor([float(speed[f]) if f >= 0 else 0.0 for f in (row, *future)])
            if self.speeds:
                item["speeds"] = speeds
            if self.future_speed:
                item["future_speed"] = speeds[1:]
        if self.with_sensors or self.labels:
            item["sample"] = sample_at(a, row, labels=self.labels)
            # the shard's sha256 names the sample's content (the UE store's key, `training.ue_store`)
            item["sample"]["meta"]["shard"] = self.episodes[k][1]["sha256"]
        else:
            item["meta"] = {
                "scenario": str(a["scenario"]),
                "seed": int(a["seed"]),
                "step": int(a["step"][row]),
                "ue_step": int(a["step"][row]),
            }
        return item


def collate_transitions(items: list[dict]) -> TransitionBatch:
    """Stack `TransitionDataset` items into a TransitionBatch."""
    if not items:
        raise ValueError("collate_transitions: expected at least one item, got an empty list")
    frames = torch.stack([it["frames"] for it in items])
    mask = torch.stack([it["future_mask"] for it in items])
    speed = torch.stack([it["future_speed"] for it in items]) if "future_speed" in items[0] else None
    speeds = torch.stack([it["speeds"] for it in items]) if "speeds" in items[0] else None
    if "sample" not in items[0]:
        meta = {k: [it["meta"][k] for it in items] for k in ("scenario", "seed", "step", "ue_step")}
        return TransitionBatch(frames=frames, future_mask=mask, meta=meta, future_speed=speed, speeds=speeds)
    samples = [it["sample"] for it in items]
    keys = ("scenario", "seed", "step", "ue_step")
    keys += ("shard",) if all("shard" in s["meta"] for s in samples) else ()
    meta = {k: [s["meta"][k] for s in samples] for k in keys}
    if "waypoints" in samples[0]:
        driving = collate_driving(samples)
        return TransitionBatch(
            frames=frames, future_mask=mask, sensors=driving.sensors, meta=meta, driving=driving,
            future_speed=speed, speeds=speeds,
        )  # fmt: skip

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
    ).validate()
    return TransitionBatch(
        frames=frames, future_mask=mask, sensors=sensors, meta=meta, future_speed=speed, speeds=speeds
    )


def strip_labels(source: str | Path, out: str | Path) -> dict:
    """An observations-only copy of a labeled dataset: every shard rewritten without its label fields,
    an index that says `"labeled": false` (its config records where it came from). The same driving
    logs with the labels thrown away: the semi-supervised setting where labels exist for a share of
    the episodes. Resumable (finished shards are kept); refuses to overwrite a different dataset."""
    import hashlib
    import json

    from automot.io import write_json_atomic
    from driving.collect import INDEX_NAME

    source, out = Path(source), Path(out)
    index = read_index(source)
    if not index.get("complete", False):
        raise ValueError(f"dataset {source}: expected a complete collection, the index says it is unfinished")
    config = {**index["config"], "labeled": False, "stripped_from": str(source.resolve())}
    existing = out / INDEX_NAME
    if existing.exists() and json.loads(existing.read_text()).get("config") != config:
        raise ValueError(
            f"{out}: expected an empty folder or a copy stripped from {source}, got another dataset"
        )
    episodes = []
    for entry in index["episodes"]:
        target = out / entry["file"]
        if not target.exists():
            arrays = read_shard(
                source / entry["file"], expected_sha256=entry["sha256"], fields=OBSERVATION_FIELDS
            )
            write_shard(target, arrays)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        episodes.append({**entry, "sha256": digest})
    stripped = {**index, "config": config, "episodes": episodes, "labeled": False, "complete": True}
    write_json_atomic(existing, stripped)
    return stripped
