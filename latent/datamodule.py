"""A LightningDataModule over `TransitionDataset`s (kept apart from `latent.data`: importing Lightning
costs seconds). The training order depends only on (seed, epoch) and is restored from Lightning
checkpoints (`automot.sampling.ResumableDataLoader`), so resumed latent stages are bit-identical."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from automot.sampling import ResumableDataLoader
from latent.data import TransitionDataset, collate_transitions


class TransitionDataModule(L.LightningDataModule):
    """train_dirs / val_dirs: dataset folders. offsets_s, observation, sensors, labels, require_future,
    scenarios, future_speed and speeds are the `TransitionDataset` arguments of both splits;
    `episode_fraction` and `fraction_seed` select training episodes only (validation keeps all of its
    episodes)."""

    def __init__(
        self,
        train_dirs: str | Path | list,
        val_dirs: str | Path | list | None = None,
        *,
        batch_size: int = 32,
        seed: int = 0,
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
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"TransitionDataModule.batch_size: expected >= 1, got {batch_size}")
        self.dirs = {"train": train_dirs, "val": val_dirs}
        self.batch_size, self.seed = batch_size, seed
        self.fraction = {"episode_fraction": episode_fraction, "fraction_seed": fraction_seed}
        self.dataset_args: dict[str, Any] = dict(
            offsets_s=tuple(offsets_s),
            observation=observation,
            sensors=sensors,
            labels=labels,
            require_future=require_future,
            scenarios=scenarios,
            future_speed=future_speed,
            speeds=speeds,
        )
        self.datasets: dict[str, TransitionDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        for split, dirs in self.dirs.items():
            if dirs is not None and split not in self.datasets:
                extra = self.fraction if split == "train" else {}
                self.datasets[split] = TransitionDataset(dirs, **self.dataset_args, **extra)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return ResumableDataLoader(
            self.datasets["train"], batch_size=self.batch_size, seed=self.seed, collate_fn=collate_transitions
        )

    def val_dataloader(self) -> DataLoader:
        if self.dirs["val"] is None:
            raise ValueError("TransitionDataModule: expected val_dirs for the val loader, got None")
        self.setup()
        return DataLoader(
            self.datasets["val"], batch_size=self.batch_size, shuffle=False, collate_fn=collate_transitions
        )

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        return batch.to(device)
