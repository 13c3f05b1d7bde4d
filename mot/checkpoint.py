"""Action-expert checkpoints: `action_expert.safetensors` + `mot_config.json` in one folder.

The JSON holds the `MoTConfig` (so the head, decision set and AE sizes come back) and the UE
geometry the AE was built for; loading checks the weights strictly against a fresh build. Weights
are never unpickled. The UE is not part of this checkpoint: it is a checkpoint of its own (an HF
Qwen3-VL folder, see `mot.qwen_offline.save_qwen3vl`) named by `MoTConfig.ue.checkpoint`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from automot.io import load_safetensors, load_state_dict_strict, save_safetensors_atomic, write_json_atomic
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
    write_json_atomic(
        directory / CONFIG,
        {"format": FORMAT, "config": ae.config.to_dict(), "ue_geometry": asdict(ae.geometry)},
    )
    return directory


def load_action_expert(directory: str | os.PathLike, *, device: torch.device | str = "cpu") -> ActionExpert:
    directory = Path(directory)
    path = directory / CONFIG
    if not path.exists():
        raise ValueError(f"action-expert checkpoint: expected {path} to exist, it does not")
    meta = json.loads(path.read_text())
    if meta.get("format") not in (1, FORMAT):
        raise ValueError(f"{path}: expected format 1 or {FORMAT}, got {meta.get('format')!r}")
    data = meta["config"]
    if meta["format"] == 1:
        data = dict(data)
        for key, values in _FORMAT1_FIELDS.items():
            data[key] = {**values, **data.get(key, {})}
    config = MoTConfig.from_dict(data)
    geometry = UEGeometry(**meta["ue_geometry"])
    ae = build_action_expert(config, geometry, device="cpu")
    load_state_dict_strict(ae, load_safetensors(directory / WEIGHTS), source=str(directory / WEIGHTS))
    return ae.to(device)
