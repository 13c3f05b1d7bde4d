"""Deterministic, resumable batch order for training.

`ResumableDataLoader` shuffles with a generator seeded by (seed, epoch), counts the batches it has
handed out in the current epoch and exposes `state_dict` / `load_state_dict`, which Lightning stores
in its checkpoints; on resume it skips the batches already seen. So a run resumed from any Lightning
checkpoint, mid-epoch or not, sees exactly the batches an uninterrupted run would have seen. (Under
DDP Lightning swaps in a `DistributedSampler`, which is epoch-seeded; resume is then exact at epoch
boundaries.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class _PassSampler(Sampler[int]):
    """The loader's own sampler: shuffled by (seed, epoch), with a one-shot skip. It has no
    `set_epoch`, so Lightning leaves it alone: the loader counts its own epochs."""

    def __init__(self, num_samples: int, seed: int, shuffle: bool) -> None:
        self.num_samples, self.seed, self.shuffle = num_samples, seed, shuffle
        self.epoch, self.skip = 0, 0

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0
        if not self.shuffle:
            return iter(range(skip, self.num_samples))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=g).tolist()[skip:])

    def __len__(self) -> int:
        return self.num_samples


class ResumableDataLoader(DataLoader):
    """A shuffling DataLoader whose position (epoch, batches handed out) Lightning saves and restores.

    Every new pass over the loader is a new epoch, except the first pass after `load_state_dict`,
    which continues the saved epoch where it stopped (or starts the next one if the saved epoch was
    complete). The order never depends on Lightning's own epoch bookkeeping, which differs between a
    fresh run and a run resumed from an end-of-epoch checkpoint.

    Under DDP Lightning re-creates the loader with its own `DistributedSampler` (re-seeded by epoch):
    that sampler is then used as is, and resumes are exact at epoch boundaries.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        sampler: Sampler | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.pop("batch_sampler", None) is not None:
            raise ValueError(
                "ResumableDataLoader: expected no batch_sampler argument (it batches its sampler)"
            )
        self.seed, self.shuffle = seed, shuffle
        self.pass_sampler = _PassSampler(len(dataset), seed, shuffle) if sampler is None else None
        super().__init__(dataset, batch_size=batch_size, sampler=sampler or self.pass_sampler, **kwargs)
        self._epoch, self._batches_done = 0, 0
        self._started, self._restored = False, False

    def __iter__(self):
        if self.pass_sampler is None:
            yield from super().__iter__()
            return
        if self._restored:
            self._restored = False
            if self._batches_done >= len(self):
                self._epoch, self._batches_done = self._epoch + 1, 0
        elif self._started:
            self._epoch, self._batches_done = self._epoch + 1, 0
        self._started = True
        self.pass_sampler.epoch = self._epoch
        self.pass_sampler.skip = self._batches_done * self.batch_size
        for batch in super().__iter__():
            self._batches_done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        if self.pass_sampler is None:
            return {}
        return {"epoch": self._epoch, "batches_done": self._batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if self.pass_sampler is None or not state:
            return
        self._epoch, self._batches_done = int(state["epoch"]), int(state["batches_done"])
        self._restored = True
