"""The UE memo stores a cache that is a function of its sample only: not of the batch-mates (and
their prompt lengths) it was first met with. Otherwise a fit resumed from a checkpoint, which meets
the samples in other first batches, would train on other bits than an uninterrupted fit."""

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
