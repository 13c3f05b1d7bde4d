"""A LightningDataModule over collected datasets (kept apart from `driving.dataset`: importing Lightning
costs seconds). Batches are `driving.dataset.DrivingBatch`; the training order depends only on
(seed, epoch) and is restored from Lightning checkpoints (`automot.sampling.ResumableDataLoader`)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from automot.sampling import ResumableDataLoader
from driving.dataset import DrivingDataset, collate


class DrivingDataModule(L.LightningDataModule):
    def __init__(
        self,
        train_dirs: str | Path | list,
        val_dirs: str | Path | list | None = None,
        test_dirs: str | Path | list | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        scenarios: list[str] | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"DrivingDataModule.batch_size: expected >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"DrivingDataModule.num_workers: expected >= 0, got {num_workers}")
        self.dirs = {"train": train_dirs, "val": val_dirs, "test": test_dirs}
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.scenarios = scenarios
        self.datasets: dict[str, DrivingDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        for split, dirs in self.dirs.items():
            if dirs is not None and split not in self.datasets:
                self.datasets[split] = DrivingDataset(dirs, scenarios=self.scenarios)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if self.dirs[split] is None:
            raise ValueError(
                f"DrivingDataModule: expected {split}_dirs to be set for the {split} loader, got None"
            )
        self.setup()
        common = dict(
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
        )
        if shuffle:
            # Order from (seed, epoch) only, saved in Lightning checkpoints: resumes are exact.
            return ResumableDataLoader(self.datasets[split], seed=self.seed, **common)
        return DataLoader(self.datasets[split], shuffle=False, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        return batch.to(device)
