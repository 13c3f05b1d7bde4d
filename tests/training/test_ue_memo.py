"""The UE memo stores a cache that is a function of its sample only: not of the batch-mates (and
their prompt lengths) it was first met with. Otherwise a fit resumed from a checkpoint, which meets
the samples in other first batches, would train on other bits than an uninterrupted fit."""

import pytest
import torch

from driving.dataset import collate
from tests.training.fakes import FakeDataset
from training.policy import BackboneSpec
from training.ue_memo import UEMemo


def _caches_equal(a, b) -> bool:
    return (
        a.hidden.shape == b.hidden.shape
        and torch.equal(a.hidden, b.hidden)
        and torch.equal(a.mask, b.mask)
        and all(torch.equal(x, y) for x, y in zip(a.keys + a.values, b.keys + b.values))
    )


def test_a_stored_ue_cache_does_not_depend_on_the_batch_it_was_first_met_in():
    ue = BackboneSpec(seed=0).build().ue
    items = [FakeDataset(6)[i] for i in range(6)]
    for i, item in enumerate(items):  # prompts of three lengths: batched prefills are left-padded
        item["prompt"] += " keep the lane ." * (i % 3)
    batch = collate(items)
    keys = UEMemo.sample_keys(batch)
    with torch.no_grad():
        together = UEMemo(ue)
        first = together.prefill(batch.sensors, keys)
        alone = UEMemo(ue)
        for i in (5, 0, 3, 1, 4, 2):
            alone.prefill(batch.sensors.select([i]), [keys[i]])
        again = together.prefill(batch.sensors, keys)
    assert (together.misses, together.hits, alone.misses) == (6, 6, 6)
    assert len({c.seq_len for c in together._store.values()}) == 3  # really padded when batched
    assert all(_caches_equal(together._store[k], alone._store[k]) for k in keys)
    assert _caches_equal(first, again)  # a batch from stored caches is the batch first returned


def test_the_memory_budget_keeps_the_first_caches_that_fit_and_changes_no_bit():
    """A full-size UE's caches are tens of MB per sample: the memo keeps only what its byte budget
    allows (the first samples met), prefills the others again when they return, and a batch it
    assembles is the same bits with or without the budget."""
    ue = BackboneSpec(seed=0).build().ue
    items = [FakeDataset(6)[i] for i in range(6)]
    for i, item in enumerate(items):
        item["prompt"] += " keep the lane ." * (i % 3)
    batch = collate(items)
    keys = UEMemo.sample_keys(batch)
    with torch.no_grad():
        unlimited = UEMemo(ue, max_bytes=None)
        want = unlimited.prefill(batch.sensors, keys)
        sizes = [unlimited._store[k].nbytes() for k in keys]
        budget = sizes[0] + sizes[1] + sizes[2] // 2  # room for the first two caches, not a third
        limited = UEMemo(ue, max_bytes=budget)
        first = limited.prefill(batch.sensors, keys)
        calls = ue.prefill_calls
        again = limited.prefill(batch.sensors, keys)
    assert list(limited._store) == keys[:2] and limited.budget.bytes == sizes[0] + sizes[1] <= budget
    assert ue.prefill_calls - calls == 4  # the four caches past the budget were prefilled again
    assert (limited.hits, limited.misses) == (2, 10)
    assert _caches_equal(first, want) and _caches_equal(again, want)
    assert all(c.hidden.device.type == "cpu" for c in limited._store.values())
    with pytest.raises(ValueError, match="max_bytes: expected >= 0 or None, got -1"):
        UEMemo(ue, max_bytes=-1)
