"""A disk store of the frozen UE's per-sample caches, shared by every training task of a study.

The UE is frozen, so a sample's UE cache (`training.ue_memo`) is the same in every task that trains
on it: a study's AE of each training seed, its DAgger fine-tunes and its refiners all prefill the same
demonstrations again (in the demo, about 37,000 prefills for about 6,400 distinct samples). `UEStore`
keeps each cache once on disk, under the sample's content identity and the UE's fingerprint:

    <folder>/<UE fingerprint>/<sha256 of (shard sha256, step, ue_step)>.safetensors

- The shard's sha256 (from the dataset index) names the sample's data, not a path: copied or
  re-collected shards with the same bytes share caches, and a DAgger rollout of another training
  seed (another policy, other frames) never meets this one's caches.
- The fingerprint (`FrozenQwen3VLExpert.fingerprint`) covers the weights, the configs, torch's version
  and the thread count, so a stored cache holds exactly the bits this process would compute: training
  with the store is bit-for-bit training without it (tested).
- Writes are atomic (a temporary file, then a rename): a killed task leaves whole files or none, and
  two tasks that compute the same sample at once write identical bytes.

A cache is a few tens of kB (the tiny preset: 78 kB), so a demo study's store is about 0.5 GB;
everything in it can be recomputed, and deleting the folder only costs time. A full-size Qwen3-VL's
cache is tens of MB per sample, so the store has two limits: it stops writing (and keeps reading)
once this UE's folder holds `max_bytes` (16 GiB by default), or when a write would leave less than
`min_free_bytes` (2 GiB) free on the disk. The tasks then prefill the samples they could not store,
as without a store: the limits change what a study costs, never what it computes. The size limit
is soft when several tasks write at once (each counts its own writes after a first look).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Hashable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mot.cache import UECache


def _content(key) -> tuple[str, int, int]:
    """(shard sha256, step, ue_step) of a `training.ue_memo.SampleKey`."""
    if getattr(key, "shard", None) is None:
        raise ValueError(f"key: expected a SampleKey naming its shard (DrivingDataset samples), got {key!r}")
    return str(key.shard), int(key.step), int(key.ue_step)


DEFAULT_STORE_BYTES = 16 << 30
DEFAULT_MIN_FREE_BYTES = 2 << 30


class UEStore:
    """`get(key)` / `put(key, cache)` of one-sample `UECache`s for the UE `ue` (see the module docstring)."""

    def __init__(
        self,
        folder: str | Path,
        ue,
        *,
        max_bytes: int | None = DEFAULT_STORE_BYTES,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
    ) -> None:
        """`max_bytes` (None: no limit): how much this UE's folder may hold before the store stops
        writing; `min_free_bytes`: the disk space a write must leave free."""
        if not callable(getattr(ue, "fingerprint", None)):
            raise ValueError(
                f"ue: expected an understanding expert with a fingerprint() (FrozenQwen3VLExpert), got "
                f"{type(ue).__name__}"
            )
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"UEStore.max_bytes: expected >= 0 or None, got {max_bytes}")
        if min_free_bytes < 0:
            raise ValueError(f"UEStore.min_free_bytes: expected >= 0, got {min_free_bytes}")
        self.root, self.ue = Path(folder), ue
        self.max_bytes, self.min_free_bytes = max_bytes, min_free_bytes
        self._folders: dict[tuple[str, int], Path] = {}
        self._sizes: dict[Path, int] = {}  # bytes in each UE folder: a first look, then this store's writes
        self.reads = self.writes = self.skipped = 0

    @property
    def folder(self) -> Path:
        """This UE's folder, named by its fingerprint as the UE is now (device and thread count
        included: the UE moves to the training device only when the fit starts)."""
        now = (str(self.ue.device), torch.get_num_threads())
        if now not in self._folders:
            self._folders[now] = self.root / self.ue.fingerprint()
        return self._folders[now]

    def path(self, key: Hashable) -> Path:
        shard, step, ue_step = _content(key)
        name = hashlib.sha256(json.dumps([str(shard), int(step), int(ue_step)]).encode()).hexdigest()
        return self.folder / f"{name}.safetensors"

    def get(self, key: Hashable) -> UECache | None:
        path = self.path(key)
        if not path.exists():
            return None
        with safe_open(path, framework="pt") as f:
            meta = f.metadata()
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (not a dict)
        self.reads += 1
        return _from_tensors(tensors, meta, key, path)

    def put(self, key: Hashable, cache: UECache) -> None:
        if cache.batch_size != 1:
            raise ValueError(f"cache: expected a one-sample UECache, got batch size {cache.batch_size}")
        path = self.path(key)
        if path.exists():
            return
        if not self._room_for(path.parent, cache.nbytes()):
            self.skipped += 1
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors, meta = _to_tensors(cache, key)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.writes += 1
        self._sizes[path.parent] += path.stat().st_size

    def _room_for(self, folder: Path, size: int) -> bool:
        """May a cache of about `size` bytes be written into `folder` within both limits?"""
        if folder not in self._sizes:
            self._sizes[folder] = _folder_bytes(folder)
        if self.max_bytes is not None and self._sizes[folder] + size > self.max_bytes:
            return False
        probe = folder if folder.exists() else self.root if self.root.exists() else Path(".")
        return shutil.disk_usage(probe).free - size >= self.min_free_bytes


def _folder_bytes(folder: Path) -> int:
    """The bytes of the files directly in `folder` (0 if it does not exist)."""
    if not folder.is_dir():
        return 0
    total = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):  # a temporary file renamed or removed meanwhile
                total += entry.stat().st_size if entry.is_file() else 0
    return total


def _to_tensors(cache: UECache, key: Hashable) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors = {f"keys.{i}": k.contiguous() for i, k in enumerate(cache.keys)}
    tensors |= {f"values.{i}": v.contiguous() for i, v in enumerate(cache.values)}
    tensors |= {"hidden": cache.hidden, "mask": cache.mask, "position_offset": cache.position_offset}
    if cache.reasoning_mask is not None:
        tensors["reasoning_mask"] = cache.reasoning_mask
    meta = {
        "key": json.dumps(list(_content(key))),
        "num_layers": str(cache.num_layers),
        "step": str(int(cache.step)),
        "time_s": float(cache.time_s).hex(),  # exact
        "generation": str(int(cache.generation)),
        "reasoning_text": json.dumps(None if cache.reasoning_text is None else list(cache.reasoning_text)),
    }
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, meta


def _from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, str], key, path: Path) -> UECache:
    stored = json.loads(meta["key"])
    if stored != list(_content(key)):
        raise ValueError(f"UE store {path}: expected the cache of sample {list(_content(key))}, got {stored}")
    layers = int(meta["num_layers"])
    text = json.loads(meta["reasoning_text"])
    return UECache(
        keys=tuple(tensors[f"keys.{i}"] for i in range(layers)),
        values=tuple(tensors[f"values.{i}"] for i in range(layers)),
        hidden=tensors["hidden"],
        mask=tensors["mask"],
        position_offset=tensors["position_offset"],
        step=int(meta["step"]),
        time_s=float.fromhex(meta["time_s"]),
        generation=int(meta["generation"]),
        reasoning_mask=tensors.get("reasoning_mask"),
        reasoning_text=None if text is None else tuple(text),
    )
