"""Memoised prefill of the frozen understanding expert for training.

The UE is frozen and a dataset sample's camera history and prompt never change, so its UE cache is
the same every epoch. `UEMemo` keeps one unpadded cache per sample (keyed by the sample's identity
from `DrivingBatch.meta`), runs the UE only on samples it has not seen (each alone, so a stored
cache is a function of its sample only, whatever batch or resume point it was first met in: resumed
fits are bit-for-bit those of uninterrupted ones), and assembles the batch
cache with `UECache.stack`. The planning result is the same as a fresh prefill (the AE does not
depend on padding; tested), at a fraction of the cost: the UE and its image processor dominate a
tiny-preset training step.
"""

from __future__ import annotations

from collections.abc import Hashable

from mot.cache import UECache

META_KEYS = ("scenario", "seed", "step", "ue_step")


class UEMemo:
    def __init__(self, ue, max_items: int = 200_000) -> None:
        if max_items < 0:
            raise ValueError(f"max_items: expected >= 0, got {max_items}")
        self.ue, self.max_items = ue, max_items
        self._store: dict[Hashable, UECache] = {}
        self.hits = self.misses = 0

    @staticmethod
    def sample_keys(batch) -> list[Hashable] | None:
        """One key per sample from the batch's meta, or None when the batch carries no identity."""
        meta = getattr(batch, "meta", None)
        if not meta or any(k not in meta for k in META_KEYS):
            return None
        return list(zip(*(meta[k] for k in META_KEYS)))

    def prefill(self, sensors, keys: list[Hashable] | None) -> UECache:
        """The batch's UE cache; only samples without a stored cache go through the UE."""
        if keys is None or self.max_items == 0:
            return self.ue.prefill(sensors)
        if len(keys) != sensors.batch_size:
            raise ValueError(f"keys: expected one key per sample ({sensors.batch_size}), got {len(keys)}")
        missing = [i for i, k in enumerate(keys) if k not in self._store]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        # One sample at a time: a sample's UE output then depends on that sample only. Prefilled with
        # batch-mates it depends on their prompt lengths (left padding changes the attention sums in
        # the last bits), and which batch-mates a sample first meets depends on where a run started,
        # so a fit resumed from a checkpoint would train on other bits than an uninterrupted one.
        fresh = {i: self.ue.prefill(sensors.select([i])).split()[0] for i in missing}
        for i, cache in fresh.items():
            if len(self._store) < self.max_items:
                self._store[keys[i]] = cache
        device = sensors.rgb.device
        return UECache.stack(
            [fresh[i] if i in fresh else self._store[k].to(device) for i, k in enumerate(keys)]
        )
