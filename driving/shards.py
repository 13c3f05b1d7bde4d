"""Episode shards on disk: one `.npz` per episode, byte-for-byte deterministic, validated on read.

A shard holds the episode's camera frames once (F, 3, H, W) and per sample (N of them) indices into
them plus every other field. Layout (dims: N samples, F frames, T history frames, A agents):

    frames (F, 3, H, W) uint8          rgb_history_idx (N, T) int32     rgb_idx (N,) int32
    bev (N, C, Hb, Wb) uint8 in {0,1}  ego_state (N, 3) f32            ego_history (N, 4, 4) f32
    target_point (N, 2) f32            waypoints (N, 6, 2) f32         route (N, 20, 2) f32
    lateral / longitudinal / longitudinal3 (N, 3) int64                 ego_size (N, 2) f32
    agent_boxes (N, 6, A, 5) f32       agent_mask (N, 6, A) bool       prompt, scene_text (N,) str
    step, ue_step (N,) int32           time_s (N,) f32                 scenario () str, seed () int64
    outcome () str, route_completion () f64 (the episode's, percent)

An *unlabeled* shard (collected with `CollectConfig.labeled=False`) holds the observation fields
only: none of `LABEL_FIELDS` (the expert plan, meta-actions, future agent boxes, ego size, scene
text) is written. `read_shard(..., fields=OBSERVATION_FIELDS)` reads only those members of the zip,
so a reader that must never see labels (latent-action learning) never decompresses a label array.

Written through a zip with fixed timestamps (numpy's savez stamps the current time), so the same
episode gives the same bytes and the index can hold a sha256 per shard. Read with allow_pickle=False;
anything missing, mis-shaped, non-finite or out of range raises ValueError naming the file.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np

from automot import spec
from automot.io import atomic_path

FORMAT_VERSION = 1

# name -> (dtype kind, shape spec); ints are exact sizes, strings are named sizes shared across fields.
SCHEMA: dict[str, tuple[str, tuple]] = {
    "frames": ("uint8", ("F", 3, "H", "W")),
    "rgb_history_idx": ("int32", ("N", "T")),
    "rgb_idx": ("int32", ("N",)),
    "bev": ("uint8", ("N", len(spec.BEV_CHANNELS), "Hb", "Wb")),
    "ego_state": ("float32", ("N", spec.EGO_STATE_DIM)),
    "ego_history": ("float32", ("N", spec.HISTORY_LEN, spec.HISTORY_DIM)),
    "target_point": ("float32", ("N", 2)),
    "waypoints": ("float32", ("N", spec.NUM_WAYPOINTS, 2)),
    "route": ("float32", ("N", spec.NUM_ROUTE_POINTS, 2)),
    "lateral": ("int64", ("N", len(spec.DECISION_HORIZONS_S))),
    "longitudinal": ("int64", ("N", len(spec.DECISION_HORIZONS_S))),
    "longitudinal3": ("int64", ("N", len(spec.DECISION_HORIZONS_S))),
    "agent_boxes": ("float32", ("N", spec.NUM_WAYPOINTS, "A", 5)),
    "agent_mask": ("bool", ("N", spec.NUM_WAYPOINTS, "A")),
    "ego_size": ("float32", ("N", 2)),
    "prompt": ("str", ("N",)),
    "scene_text": ("str", ("N",)),
    "step": ("int32", ("N",)),
    "ue_step": ("int32", ("N",)),
    "time_s": ("float32", ("N",)),
    "scenario": ("str", ()),
    "seed": ("int64", ()),
    "outcome": ("str", ()),
    "route_completion": ("float64", ()),
}
# What an expert labels (everything derived from the future or from privileged world state); an
# unlabeled shard has none of them. Episode metadata (scenario, seed, outcome) stays in both.
LABEL_FIELDS: tuple[str, ...] = (
    "waypoints", "route", "lateral", "longitudinal", "longitudinal3", "agent_boxes", "agent_mask",
    "ego_size", "scene_text",
)  # fmt: skip
OBSERVATION_FIELDS: tuple[str, ...] = tuple(k for k in SCHEMA if k not in LABEL_FIELDS)
_VOCAB_SIZES = {
    "lateral": len(spec.LATERAL_ACTIONS),
    "longitudinal": len(spec.LONGITUDINAL_ACTIONS),
    "longitudinal3": len(spec.LONGITUDINAL_ACTIONS_3),
}


def shard_fields(labeled: bool) -> tuple[str, ...]:
    """The fields a labeled (all of SCHEMA) or unlabeled (OBSERVATION_FIELDS) shard holds."""
    return tuple(SCHEMA) if labeled else OBSERVATION_FIELDS


def is_labeled(fields) -> bool:
    """Whether a shard with these fields is labeled; a shard with only some label fields is an error."""
    present = sorted(set(LABEL_FIELDS) & set(fields))
    if present and len(present) != len(LABEL_FIELDS):
        raise ValueError(
            f"shard fields: expected all label fields {sorted(LABEL_FIELDS)} (labeled) or none (unlabeled), "
            f"got only {present}"
        )
    return bool(present)


def encode_shard(arrays: dict[str, np.ndarray]) -> bytes:
    """Serialise `arrays` (exactly the SCHEMA fields, or exactly OBSERVATION_FIELDS for an unlabeled
    shard) to deterministic npz bytes."""
    wanted = set(shard_fields(is_labeled(arrays)))
    missing = sorted(wanted - set(arrays))
    extra = sorted(set(arrays) - wanted)
    if missing or extra:
        raise ValueError(
            f"shard arrays: expected the fields {sorted(wanted)}, missing {missing}, unexpected {extra}"
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asarray(arrays[name]), allow_pickle=False)
    return buffer.getvalue()


def write_shard(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> str:
    """Atomically write a shard; returns its sha256."""
    data = encode_shard(arrays)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def read_shard(
    path: str | os.PathLike,
    expected_sha256: str | None = None,
    expected_dims: dict[str, int] | None = None,
    fields: tuple[str, ...] | None = None,
) -> dict[str, np.ndarray]:
    """Load and validate a shard. `expected_dims` pins named sizes (H, W, Hb, Wb, T, A) from the index.

    `fields` (e.g. OBSERVATION_FIELDS) loads only those members; the others are never decompressed.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"shard {path}: expected a readable file, got {err}") from err
    if expected_sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected_sha256:
            raise ValueError(
                f"shard {path}: expected sha256 {expected_sha256} (from the index), got {digest}: the file is corrupt "
                "or from another collection"
            )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            names = [n for n in npz.files if fields is None or n in fields]
            arrays = {name: npz[name] for name in names}
    except Exception as err:  # zipfile/npy errors vary (BadZipFile, ValueError, EOFError, OSError)
        raise ValueError(
            f"shard {path}: expected a readable .npz file, got {type(err).__name__}: {err}"
        ) from err
    validate_shard(arrays, str(path), expected_dims, required=fields)
    return arrays


def validate_shard(
    arrays: dict[str, np.ndarray],
    name: str,
    expected_dims: dict[str, int] | None = None,
    required: tuple[str, ...] | None = None,
) -> None:
    """Check dtypes, shapes and ranges. `required` None: a whole labeled or unlabeled shard."""
    if required is None:
        try:
            required = shard_fields(is_labeled(arrays))
        except ValueError as err:
            raise ValueError(f"shard {name}: {err}") from None
    missing = sorted(set(required) - set(arrays))
    if missing:
        raise ValueError(f"shard {name}: expected fields {sorted(required)}, missing {missing}")
    dims = dict(expected_dims or {})
    for field_name, (kind, shape) in SCHEMA.items():
        if field_name not in required:
            continue
        value = arrays[field_name]
        ok_kind = value.dtype.kind == "U" if kind == "str" else value.dtype == np.dtype(kind)
        if not ok_kind:
            raise ValueError(f"shard {name}: field {field_name} expected dtype {kind}, got {value.dtype}")
        if value.ndim != len(shape):
            raise ValueError(
                f"shard {name}: field {field_name} expected {len(shape)} dims {shape}, got shape {value.shape}"
            )
        for axis, (want, got) in enumerate(zip(shape, value.shape)):
            if isinstance(want, str):
                if dims.setdefault(want, got) != got:
                    raise ValueError(
                        f"shard {name}: field {field_name} axis {axis} ({want}) expected {dims[want]}, got {got}"
                    )
            elif want != got:
                raise ValueError(f"shard {name}: field {field_name} axis {axis} expected {want}, got {got}")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise ValueError(f"shard {name}: field {field_name} expected finite values, got NaN/Inf")
    for field_name, size in _VOCAB_SIZES.items():
        if field_name not in required:
            continue
        v = arrays[field_name]
        if v.size and (v.min() < 0 or v.max() >= size):
            raise ValueError(
                f"shard {name}: field {field_name} expected class indices in [0, {size}), got {v.min()}..{v.max()}"
            )
    for field_name in ("rgb_history_idx", "rgb_idx"):
        if field_name not in required or "frames" not in required:
            continue
        v = arrays[field_name]
        if v.size and (v.min() < 0 or v.max() >= dims["F"]):
            raise ValueError(
                f"shard {name}: field {field_name} expected frame indices in [0, {dims['F']}), got {v.min()}..{v.max()}"
            )
    if "bev" in required and arrays["bev"].size and arrays["bev"].max() > 1:
        raise ValueError(
            f"shard {name}: field bev expected values in {{0, 1}}, got max {arrays['bev'].max()}"
        )
