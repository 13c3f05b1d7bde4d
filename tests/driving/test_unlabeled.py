"""Unlabeled collection: observations only on disk, the index says so, readers that need labels refuse
it, and an observations-only read of a labeled dataset never decompresses a label array."""

import json

import numpy as np
import pytest
import torch

from driving.dataset import DrivingDataset
from driving.shards import LABEL_FIELDS, OBSERVATION_FIELDS, encode_shard, read_shard
from latent.data import TransitionDataset, collate_transitions, observations_only


@pytest.fixture(scope="module")
def unlabeled(unlabeled_dataset):
    return unlabeled_dataset


def test_unlabeled_shards_hold_observations_only_and_every_step(unlabeled):
    index = json.loads((unlabeled / "index.json").read_text())
    assert index["labeled"] is False and index["complete"]
    shard = next((unlabeled / "shards").glob("*.npz"))
    with np.load(shard) as npz:
        names = set(npz.files)
    assert names == set(OBSERVATION_FIELDS) and not names & set(LABEL_FIELDS)
    arrays = read_shard(shard)
    # No 3 s future is needed: every logged step is a sample (frames has one per step).
    assert list(arrays["step"]) == list(range(len(arrays["frames"])))


def test_a_labeled_reader_refuses_an_unlabeled_dataset(unlabeled):
    with pytest.raises(ValueError, match=r"expected a labeled dataset .* observations-only"):
        DrivingDataset(unlabeled)
    with pytest.raises(ValueError, match=r"expected a labeled dataset for labels=True"):
        TransitionDataset(unlabeled, labels=True)


def test_a_shard_with_some_label_fields_is_refused(unlabeled):
    arrays = read_shard(next((unlabeled / "shards").glob("*.npz")))
    arrays["waypoints"] = np.zeros((len(arrays["step"]), 6, 2), np.float32)
    with pytest.raises(ValueError, match=r"expected all label fields .* or none .* got only \['waypoints'\]"):
        encode_shard(arrays)


def test_observation_reads_never_touch_a_label_array(tiny_dataset, monkeypatch):
    """The access guard: every member read from any shard is recorded while transitions (with
    sensors) are built from a labeled dataset; no label member is ever read."""
    seen: list[str] = []
    original = np.lib.npyio.NpzFile.__getitem__

    def recording(self, key):
        seen.append(key)
        return original(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", recording)
    dataset = TransitionDataset(tiny_dataset / "val", offsets_s=(1.0, 2.0, 3.0), sensors=True)
    batch = collate_transitions([dataset[i] for i in range(0, len(dataset), max(1, len(dataset) // 5))])
    assert observations_only(batch, "test") is batch and batch.driving is None
    assert seen and not set(seen) & set(LABEL_FIELDS)
    # The same read with labels does touch them (so the recording can fail).
    seen.clear()
    labeled = TransitionDataset(tiny_dataset / "val", offsets_s=(1.0,), labels=True)
    collate_transitions([labeled[0]])
    assert set(LABEL_FIELDS) <= set(seen)


def test_transitions_pair_the_right_future_frames(unlabeled):
    ds = TransitionDataset(unlabeled, offsets_s=(1.0, 2.0), sensors=False)
    arrays = read_shard(next((unlabeled / "shards").glob("*.npz")))
    n = len(arrays["step"])
    assert len(ds) == n - 8  # 4 Hz: the 2 s future exists for all but the last 8 steps
    item = ds[3]
    expected = torch.from_numpy(arrays["bev"][[3, 7, 11]].astype(np.float32))
    assert torch.equal(item["frames"], expected) and bool(item["future_mask"].all())
    masked = TransitionDataset(unlabeled, offsets_s=(1.0,), sensors=False, require_future=False)
    last = masked[len(masked) - 1]
    assert (
        len(masked) == n and not bool(last["future_mask"][0]) and float(last["frames"][1].abs().sum()) == 0.0
    )
