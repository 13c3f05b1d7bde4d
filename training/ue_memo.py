"""Memoised prefill of the frozen understanding expert for training.

The UE is frozen and a dataset sample's camera history and prompt never change, so its UE cache is
the same every epoch. `UEMemo` keeps one unpadded cache per sample (keyed by the sample's identity
from `DrivingBatch.meta`), runs the UE only on samples it has not seen (each alone, so a stored
cache is a function of its sample only, whatever batch or resume point it was first met in: resumed
fits are bit-for-bit those of uninterrupted ones), and assembles the batch
cache with `UECache.stack`. The planning result is the same as a fresh prefill (the AE does not
depend on padding; tested), at a fraction of the cost: the UE and its image processor dominate a
tiny-preset training step.

With a `training.ue_store.UEStore` the caches also go to disk, keyed by the sample's content, so the
other tasks of a study (other seeds' AEs, DAgger fine-tunes, refiners) read them instead of prefilling
the same samples again; what they read is the bits they would have computed.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import NamedTuple

from mot.cache import UECache

META_KEYS = ("scenario", "seed", "step", "ue_step")


class SampleKey(NamedTuple):
    """A sample's identity within a dataset; `shard` (its shard's sha256) also names its content."""

    scenario: str
    seed: int
    step: int
    ue_step: int
    shard: str | None = None


# What the memo may hold in host memory by default. A tiny-preset cache is 78 kB, so a demo's 6,400
# samples (0.5 GB) fit; a full-size Qwen3-VL's cache is tens of MB per sample, and the budget keeps the
# memo from filling the machine (the samples beyond it are prefilled again, or read from the store).
DEFAULT_MEMO_BYTES = 4 << 30


class MemoBudget:
    """What a memo may keep: `max_items` entries and `max_bytes` bytes (None: no byte limit). The
    first entries met are admitted, later ones past either limit are not, so what a memo returns
    never depends on its budget, only what it costs."""

    def __init__(self, max_items: int, max_bytes: int | None) -> None:
        if max_items < 0:
            raise ValueError(f"max_items: expected >= 0, got {max_items}")
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes: expected >= 0 or None, got {max_bytes}")
        self.max_items, self.max_bytes = max_items, max_bytes
        self.items = self.bytes = 0  # admitted so far

    def admit(self, size: int) -> bool:
        """Count an entry of `size` bytes in if both limits allow it."""
        if self.items >= self.max_items or (
            self.max_bytes is not None and self.bytes + size > self.max_bytes
        ):
            return False
        self.items, self.bytes = self.items + 1, self.bytes + size
        return True


class UEMemo:
    def __init__(
        self, ue, max_items: int = 200_000, store=None, max_bytes: int | None = DEFAULT_MEMO_BYTES
    ) -> None:
        """`store`: a `training.ue_store.UEStore` for the same UE, or None (memory only).
        `max_items` / `max_bytes` (None: no limit): how many caches, and how many bytes of them, are
        kept in host memory; the first samples met are kept, later ones past either limit are not
        (so what a step computes never depends on the limits, only what it costs)."""
        self.budget = MemoBudget(max_items, max_bytes)
        self.ue, self.store = ue, store
        self._store: dict[Hashable, UECache] = {}
        self.hits = self.misses = 0

    @staticmethod
    def sample_keys(batch) -> list[SampleKey] | None:
        """One key per sample from the batch's meta, or None when the batch carries no identity."""
        meta = getattr(batch, "meta", None)
        if not meta or any(k not in meta for k in META_KEYS):
            return None
        shards = meta.get("shard", [None] * len(meta["step"]))
        return [SampleKey(*row, shard) for row, shard in zip(zip(*(meta[k] for k in META_KEYS)), shards)]

    def prefill(self, sensors, keys: list[Hashable] | None) -> UECache:
        """The batch's UE cache; only samples without a stored cache go through the UE."""
        if keys is None or self.budget.max_items == 0:
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
        fresh = {i: self._one(sensors, i, keys[i]) for i in missing}
        for i, cache in fresh.items():
            self._keep(keys[i], cache)
        device = sensors.rgb.device
        return UECache.stack(
            [fresh[i] if i in fresh else self._store[k].to(device) for i, k in enumerate(keys)]
        )

    def _keep(self, key: Hashable, cache: UECache) -> None:
        """Keep `cache` in host memory if both limits allow it (on the CPU: a GPU's memory is for
        training, and a full-size UE's caches would fill it within a few hundred samples)."""
        if key not in self._store and self.budget.admit(cache.nbytes()):
            self._store[key] = cache.to("cpu")

    def _one(self, sensors, i: int, key: Hashable) -> UECache:
        """Sample `i`'s cache: from the disk store when it has it, else prefilled alone (and stored)."""
        stored = getattr(key, "shard", None) is not None and self.store is not None
        if stored:
            cache = self.store.get(key)
            if cache is not None:
                return cache.to(sensors.rgb.device)
        cache = self.ue.prefill(sensors.select([i])).split()[0]
        if stored:
            self.store.put(key, cache)
        return cache
