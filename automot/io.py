"""Atomic file writes and safe (pickle-free) weight files.

Long jobs and checkpoints write to a temporary file in the destination folder and rename it into
place, so an interrupted process never leaves a half-written file under the final name. Files and
folders are created with the usual modes minus the umask (never mkstemp's private 0600), so a team
on shared storage can read each other's results. Export folders (policies, UEs) are `automot.export`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def temporary_name(path: Path) -> Path:
    """A fresh hidden name next to `path` for a file or folder being written (`.name.<random>.tmp`)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def make_dirs(path: str | os.PathLike, *, field: str = "path") -> Path:
    """`mkdir -p` honouring the umask; a file in the way is a `ValueError` naming `field`."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise ValueError(
                f"{field}: expected a folder (or a path that can become one) at {path}, but {part} is a file"
            )
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, field: str = "path") -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed onto `path` (atomic on POSIX).

    The temporary file is created with mode 0o666 minus the umask (as `open` would), not mkstemp's
    0o600, so results on shared storage are readable by whoever the umask lets read them.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{field}: expected a file path, got the folder {path}")
    make_dirs(path.parent, field=field)
    tmp_path = temporary_name(path)
    os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    mode = stat.S_IMODE(tmp_path.stat().st_mode)  # 0o666 minus the umask
    try:
        yield tmp_path
        if (
            stat.S_IMODE(tmp_path.stat().st_mode) != mode
        ):  # a writer that made its own file (safetensors: 0o600)
            os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj: object) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def append_jsonl(path: str | os.PathLike, record: dict, *, field: str = "records") -> None:
    """Append one JSON line and fsync, so a finished record survives a kill right after."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{field}: expected a JSON-lines file, got the folder {path}")
    make_dirs(path.parent, field=field)
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike, *, field: str = "records") -> list[dict]:
    """Read JSON lines; a torn last line (the writer was killed mid-write) is ignored, any other bad line raises."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{field}: expected a JSON-lines file, got the folder {path}")
    if not path.exists():
        return []
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{field}: expected a JSON-lines text file at {path}, got binary content") from err
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:
                break
            raise ValueError(
                f"{field}: expected JSON lines in {path}, line {i + 1} is not valid JSON ({err})"
            ) from err
    return records


def save_safetensors_atomic(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    # safetensors refuses shared storage; contiguous clones make every tensor its own buffer.
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_safetensors(path: str | os.PathLike, device: str = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file: expected {path} to exist, it does not")
    try:
        return load_file(str(path), device=device)
    except Exception as err:  # safetensors raises its own SafetensorError / OSError for a damaged file
        raise ValueError(
            f"weights file {path}: expected a complete safetensors file, got an unreadable one "
            f"({type(err).__name__}: {err}); the file is truncated or not safetensors"
        ) from err


def load_state_dict_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Load `state` into `module`, raising `ValueError` that lists every missing, unexpected, mis-shaped
    or mis-typed key (nothing is cast or dropped)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(
        f"{k}: expected {tuple(own[k].shape)}, got {tuple(state[k].shape)}"
        for k in set(own) & set(state)
        if own[k].shape != state[k].shape
    )
    dtype = sorted(
        f"{k}: expected {own[k].dtype}, got {state[k].dtype}"
        for k in set(own) & set(state)
        if own[k].dtype != state[k].dtype
    )
    if missing or unexpected or shape or dtype:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        if shape:
            parts.append(f"shape mismatches {shape}")
        if dtype:  # load_state_dict would cast silently
            parts.append(f"dtype mismatches {dtype}")
        raise ValueError(f"checkpoint {source} does not match {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(state, strict=True)
