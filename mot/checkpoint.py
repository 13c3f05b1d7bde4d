"""Action-expert checkpoints: `action_expert.safetensors` + `mot_config.json` in one folder.

The JSON holds the `MoTConfig` (so the head, decision set and AE sizes come back), the UE geometry
the AE was built for, where the head class lives (`head`: registry name, module, class; loading
imports the module of a plug-in head, or names it when it cannot) and the sensor shapes the AE was
trained with (`input_shapes`, checked on every batch). Loading checks the weights strictly (keys,
shapes, dtypes) against a fresh build. Weights
are never unpickled. The UE is not part of this checkpoint: it is a checkpoint of its own (an HF
Qwen3-VL folder, see `mot.qwen_offline.save_qwen3vl`) named by `MoTConfig.ue.checkpoint`, as it was
given, and also relative to the policy folder (`ue_checkpoint_from_folder`), so a policy loads from any
working directory as long as the policy and UE folders move together (`locate_ue_checkpoint`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from automot.io import load_safetensors, load_state_dict_strict, save_safetensors_atomic, write_json_atomic
from automot.plugins import import_module, module_of
from heads import HEADS
from mot.action_expert import ActionExpert, build_action_expert
from mot.config import MoTConfig, UEGeometry

WEIGHTS = "action_expert.safetensors"
CONFIG = "mot_config.json"
FORMAT = 2
# Format 1 was written before the mask options existed: its UE attended causally over image tokens
# and its planning queries came waypoints first. Those fields are absent from its JSON, and the new
# defaults differ, so a format-1 folder is read with the values it was trained with.
_FORMAT1_FIELDS = {"ue": {"image_attention": "causal"}, "ae": {"plan_order": "waypoints_first"}}


def save_action_expert(ae: ActionExpert, directory: str | os.PathLike) -> Path:
    directory = Path(directory)
    save_safetensors_atomic(ae.state_dict(), directory / WEIGHTS, metadata={"format": str(FORMAT)})
    head = type(ae.head)
    meta = {
        "format": FORMAT,
        "config": ae.config.to_dict(),
        "ue_geometry": asdict(ae.geometry),
        # Where the head class lives, so loading can import a plug-in head's module.
        "head": {"name": ae.config.head, "module": module_of(head), "class": head.__qualname__},
        "input_shapes": ae.input_shapes,
    }
    if ae.sensor_options is not None:
        meta["sensor_options"] = dict(ae.sensor_options)
    ue = ae.config.ue.checkpoint
    if ue is not None:
        # `directory` may be the export's temporary sibling folder: the same relative path either way.
        meta["ue_checkpoint_from_folder"] = os.path.relpath(Path(ue).resolve(), directory.resolve())
    write_json_atomic(directory / CONFIG, meta)
    return directory


def saved_sensor_options(directory: str | os.PathLike) -> dict[str, bool | float]:
    """The sensor settings a policy folder was trained with beyond its shapes (`ActionExpert.
    sensor_options`, e.g. {"turn_signals": True}); {} for folders that record none."""
    path = Path(directory) / CONFIG
    if not path.exists():
        raise ValueError(f"policy: expected a policy folder with {CONFIG}, got {directory}")
    options = json.loads(path.read_text()).get("sensor_options")
    return dict(options) if isinstance(options, dict) else {}


def locate_ue_checkpoint(directory: str | os.PathLike, recorded: str) -> str:
    """The UE folder a policy folder names. A relative `recorded` path is looked up next to the policy
    first (`ue_checkpoint_from_folder`, so the study folder may move and the working directory may
    change), then as given (older policy folders have only that); an absolute one is tried as given
    first, then next to the policy (a moved study that was given an absolute path). None existing is
    a `ValueError` naming every place tried."""
    directory = Path(directory)
    from_folder = read_checkpoint_meta(directory).get("ue_checkpoint_from_folder")
    beside = [str(directory / from_folder)] if isinstance(from_folder, str) else []
    candidates = [recorded, *beside] if Path(recorded).is_absolute() else [*beside, recorded]
    for candidate in candidates:
        if Path(candidate).is_dir():
            return candidate
    raise ValueError(
        f"policy {directory}: expected its UE checkpoint folder at {' or '.join(map(repr, candidates))}, "
        "found none (move the UE folder with the policy, or keep the working directory it was given from)"
    )


def read_checkpoint_meta(directory: str | os.PathLike) -> dict:
    """The parsed `mot_config.json` of a policy folder; a missing or damaged file is a `ValueError` naming it."""
    path = Path(directory) / CONFIG
    if not path.is_file():
        raise ValueError(f"action-expert checkpoint: expected {path} to exist, it does not")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: expected a JSON policy config, got unreadable content ({err})") from err
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") not in (1, FORMAT):
        raise ValueError(f"{path}: expected format 1 or {FORMAT}, got {meta.get('format')!r}")
    for key in ("config", "ue_geometry"):
        if not isinstance(meta.get(key), dict):
            raise ValueError(f"{path}: expected a {key!r} object, got {meta.get(key)!r}")
    return meta


def ensure_head_importable(meta: dict, source: str) -> None:
    """Import the module that registers the policy's head when the head is not registered yet."""
    name = meta["config"].get("head", "mlp")
    if name in HEADS:
        return
    module = (meta.get("head") or {}).get("module")
    if not module:
        HEADS.get(name)  # entry points, then a ValueError listing the known heads
        return
    import_module(module, field=f"policy {source}", needed_for=f"its head {name!r}")
    if name not in HEADS:
        raise ValueError(
            f"policy {source}: expected module {module!r} to register the head {name!r}, it did not"
        )


def load_action_expert(directory: str | os.PathLike, *, device: torch.device | str = "cpu") -> ActionExpert:
    directory = Path(directory)
    meta = read_checkpoint_meta(directory)
    ensure_head_importable(meta, str(directory))
    source = str(directory / CONFIG)
    data = meta["config"]
    if meta["format"] == 1:
        data = dict(data)
        for key, values in _FORMAT1_FIELDS.items():
            data[key] = {**values, **data.get(key, {})}
    try:
        config = MoTConfig.from_dict(data)
        geometry = UEGeometry(**meta["ue_geometry"])
    except TypeError as err:
        raise ValueError(f"{source}: expected the fields of MoTConfig / UEGeometry, got {err}") from err
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err
    ae = build_action_expert(config, geometry, device="cpu")
    load_state_dict_strict(ae, load_safetensors(directory / WEIGHTS), source=str(directory / WEIGHTS))
    shapes = meta.get("input_shapes")
    ae.input_shapes = {k: list(v) for k, v in shapes.items()} if isinstance(shapes, dict) else None
    options = meta.get("sensor_options")
    ae.sensor_options = dict(options) if isinstance(options, dict) else None
    return ae.to(device)
