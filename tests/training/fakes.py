"""Seeded in-memory driving samples in the format of `driving.dataset.DrivingDataset` (no simulator
needed), batched by the world's own `collate` into `DrivingBatch`es."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from automot import spec
from automot.sampling import ResumableDataLoader
from driving.dataset import collate


class FakeDataset(Dataset):
    """`shard`: a content name for the samples' meta, as `DrivingDataset` gives them (its shard sha256)."""

    def __init__(
        self, n: int, seed: int = 0, image: int = 32, bev: int = 32, shard: str | None = None
    ) -> None:
        self.n, self.seed, self.image, self.bev, self.shard = n, seed, image, bev, shard

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 100_003 + i)
        speed = 5 + 10 * torch.rand((), generator=g)
        t = torch.tensor(spec.waypoint_times_s())
        return {
            "rgb_history": torch.randint(
                0, 256, (4, 1, 3, self.image, self.image), generator=g, dtype=torch.uint8
            ),
            "rgb": torch.randint(0, 256, (3, self.image, self.image), generator=g, dtype=torch.uint8),
            "bev": (torch.rand(len(spec.BEV_CHANNELS), self.bev, self.bev, generator=g) > 0.8).float(),
            "ego_state": torch.stack([speed, torch.zeros(()), torch.zeros(())]),
            "ego_history": torch.randn(spec.HISTORY_LEN, spec.HISTORY_DIM, generator=g),
            "target_point": torch.tensor([20.0, 0.0]),
            "waypoints": torch.stack([speed * t, torch.zeros(6)], -1),
            "route": torch.stack([2.0 * torch.arange(1, 21).float(), torch.zeros(20)], -1),
            "lateral": torch.randint(0, 5, (3,), generator=g),
            "longitudinal": torch.randint(0, 4, (3,), generator=g),
            "longitudinal3": torch.randint(0, 3, (3,), generator=g),
            "agent_boxes": torch.zeros(6, 2, 5),
            "agent_mask": torch.zeros(6, 2, dtype=torch.bool),
            "ego_size": torch.tensor([5.0, 2.0]),
            "prompt": "follow the road for 20 metres .",
            "scene_text": "lead vehicle 20 metres ahead same speed . left lane free .",
            "meta": {"scenario": "fake", "seed": self.seed, "step": i, "ue_step": i}
            | ({"shard": self.shard} if self.shard is not None else {}),
        }


class FakeDataModule(L.LightningDataModule):
    def __init__(self, n: int = 16, batch_size: int = 4, seed: int = 0, shard: str | None = None) -> None:
        super().__init__()
        self.n, self.batch_size, self.seed, self.shard = n, batch_size, seed, shard

    def train_dataloader(self) -> DataLoader:
        dataset = FakeDataset(self.n, self.seed, shard=self.shard)
        return ResumableDataLoader(dataset, batch_size=self.batch_size, seed=self.seed, collate_fn=collate)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(FakeDataset(8, self.seed + 1), batch_size=self.batch_size, collate_fn=collate)

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        return batch.to(device)


class FakeTransitionDataset(Dataset):
    """`FakeDataset` samples as `latent.data.TransitionDataset` items: frames are the sample's BEV and
    K copies shifted forward by 2, 4, ... rows (a stand-in for driving), labels only with `labels`."""

    def __init__(
        self, n: int, seed: int = 0, offsets: int = 3, labels: bool = False, shard: str | None = None
    ) -> None:
        self.base = FakeDataset(n, seed, shard=shard)
        self.offsets, self.labels = offsets, labels

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        sample = self.base[i]
        bev = sample["bev"]
        frames = torch.stack([torch.roll(bev, 2 * k, dims=1) for k in range(self.offsets + 1)])
        if not self.labels:
            label_keys = ("waypoints", "route", "lateral", "longitudinal", "longitudinal3", "agent_boxes")
            sample = {
                k: v
                for k, v in sample.items()
                if k not in (*label_keys, "agent_mask", "ego_size", "scene_text")
            }
        return {"frames": frames, "future_mask": torch.ones(self.offsets, dtype=torch.bool), "sample": sample}


class FakeTransitionDataModule(L.LightningDataModule):
    def __init__(
        self,
        n: int = 16,
        batch_size: int = 4,
        seed: int = 0,
        offsets: int = 3,
        labels: bool = False,
        shard: str | None = None,
    ) -> None:
        super().__init__()
        self.n, self.batch_size, self.seed, self.offsets, self.labels = n, batch_size, seed, offsets, labels
        self.shard = shard

    def train_dataloader(self) -> DataLoader:
        from latent.data import collate_transitions

        dataset = FakeTransitionDataset(self.n, self.seed, self.offsets, self.labels, shard=self.shard)
        return ResumableDataLoader(
            dataset, batch_size=self.batch_size, seed=self.seed, collate_fn=collate_transitions
        )

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        return batch.to(device)
