"""A latent-action teacher: a policy folder (frozen UE + AE + planning head, `training.policy`) that
also holds the AE's latent-action head (`latent_head.safetensors` + `latent_head.json`).

Every loader of policy folders (`load_pretrained`, `automot eval`, studies) reads such a folder as the
plain policy it also is; `load_teacher` adds the latent-action head.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from automot.export import export_directory
from latent.latent_head import LatentActionHead, load_latent_head, save_latent_head
from mot.action_expert import ActionExpert
from mot.backbone import MoTBackbone
from mot.checkpoint import save_action_expert
from training.policy import POLICY_EXPORT, _legacy_policy, load_pretrained


def save_teacher(
    ae: ActionExpert, latent_head: LatentActionHead | None, directory: str | os.PathLike
) -> Path:
    """Write the policy folder (and the latent-action head when given) as a policy export
    (`automot.export`: a new folder appears atomically, a previous policy export is replaced file by
    file, anything else in the folder is kept; a foreign folder or a file is refused)."""
    with export_directory(directory, POLICY_EXPORT, legacy=_legacy_policy) as tmp:
        save_action_expert(ae, tmp)
        if latent_head is not None:
            save_latent_head(latent_head, tmp)
    return Path(directory)


def load_teacher(
    directory: str | os.PathLike, *, device: torch.device | str = "cpu", ue_checkpoint: str | None = None
) -> tuple[MoTBackbone, LatentActionHead | None]:
    """The folder's backbone and its latent-action head (None when the folder has none)."""
    backbone = load_pretrained(directory, device=device, ue_checkpoint=ue_checkpoint)
    head = load_latent_head(directory)
    return backbone, None if head is None else head.to(device)
