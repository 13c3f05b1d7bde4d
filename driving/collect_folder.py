"""Where `automot collect` writes: the dataset folder and what may already be in it.

A new or empty folder becomes a dataset; a folder holding a dataset with the same config resumes;
one whose config the new one extends (more episodes per scenario, more scenarios: the seeds of the
existing episodes are a prefix of the new plan) grows; anything else, or a file, is refused with the
differing fields named, before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path

INDEX_NAME = "index.json"
SHARD_DIR = "shards"


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON configs differ, with both values."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def check_extension(out: Path, old: dict, new: dict) -> None:
    """A dataset may grow (more episodes per scenario, more scenarios); anything else is another dataset."""
    growable = ("episodes", "scenarios", "scenario_overrides")
    same = {k: v for k, v in old.items() if k not in growable} == {
        k: v for k, v in new.items() if k not in growable
    }
    kept = [s for s in old.get("scenarios", [])]
    overrides_kept = all(
        old.get("scenario_overrides", {}).get(s) == new["scenario_overrides"].get(s) for s in kept
    )
    if (
        same
        and overrides_kept
        and set(kept) <= set(new["scenarios"])
        and new["episodes"] >= old.get("episodes", 0)
    ):
        return
    diff = "; ".join(differences(old, new)) or "the config hash"
    if same and new["episodes"] < old.get("episodes", 0):
        diff += " (a dataset is only ever extended, never shrunk)"
    raise ValueError(
        f"out: expected {out} to hold a dataset with this config, or one this config extends (more episodes or "
        f"scenarios), got one that differs in: {diff}. Nothing was changed; use another --out folder"
    )


def remove_killed_writes(out: Path) -> list[Path]:
    """Delete the temporaries a killed writer left (`.<shard or index>.<random>.tmp`); return them.

    Only names of this library's atomic writes are touched: hidden, ending in `.tmp`, in `shards/`
    or next to `index.json`. A resumed collection then leaves the same folder as an uninterrupted one.
    """
    stale = [*(out / SHARD_DIR).glob(".*.npz.*.tmp"), *out.glob(f".{INDEX_NAME}.*.tmp")]
    for path in stale:
        path.unlink()
    return stale


def prepare_out(out: Path, config_json: dict, config_hash: str) -> dict:
    """Check the destination; return the previous index's entries by file (empty for a new dataset)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: expected a dataset folder, got the file {out}")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"out: expected a dataset folder at {out}, but {parent} is a file")
    index_path = out / INDEX_NAME
    if index_path.exists():
        try:
            previous = json.loads(index_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(
                f"{index_path}: expected a JSON dataset index, got unreadable JSON ({err})"
            ) from err
        if not isinstance(previous, dict) or not isinstance(previous.get("config"), dict):
            raise ValueError(
                f"{index_path}: expected a dataset index with a 'config' object, got something else"
            )
        if previous.get("config_hash") != config_hash:
            check_extension(out, previous["config"], config_json)
        return {e["file"]: e for e in previous.get("episodes", []) if isinstance(e, dict) and "file" in e}
    others = [p.name for p in out.iterdir() if p.name != SHARD_DIR] if out.is_dir() else []
    if others:
        raise ValueError(
            f"out: expected a new or empty folder, or a dataset written by automot collect, at {out}; got a folder "
            f"holding {sorted(others)[:4]} and no {INDEX_NAME}. Nothing was written: choose another folder"
        )
    return {}
