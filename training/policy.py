"""Build, re-head, save and load a driving policy: the frozen UE + the trained AE with its head.

A *policy folder* is `mot.checkpoint`'s AE checkpoint (`action_expert.safetensors` + `mot_config.json`,
whose `ue.checkpoint` names the frozen UE folder, or is empty for an in-code UE) and nothing else:
weights in safetensors, config in JSON, never a pickle. `save_pretrained` writes it atomically
(files are written to a temporary folder, which is renamed into place).

`BackboneSpec` is the YAML-friendly recipe the training stages receive; `with_head` swaps the planning
head of a trained AE, wrapping its MLP head when the new head is a diffusion head.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from automot.config import config_to_dict
from automot.io import atomic_directory, load_safetensors, load_state_dict_strict
from heads import DiffusionHead, MLPHead, build_head
from mot.action_expert import ActionExpert, build_action_expert
from mot.backbone import MoTBackbone
from mot.checkpoint import CONFIG, WEIGHTS, load_action_expert, save_action_expert
from mot.config import MoTConfig, QwenUEConfig
from mot.presets import preset_config
from mot.understanding import FrozenQwen3VLExpert


@dataclass
class BackboneSpec:
    """How to build the backbone of a stage.

    preset / overrides: a `mot` preset name and nested overrides of its `MoTConfig`.
    ue_checkpoint:      a (pretrained, frozen) UE folder; None builds the preset's UE in code with
                        random weights (the paper's "w/o pretrained UE" ablation).
    init_from:          a policy folder whose AE (and head) initialise this one; then preset and
                        overrides are ignored (the folder's config is used).
    seed:               AE initialisation seed (when not loaded).
    """

    preset: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)
    ue_checkpoint: str | None = None
    init_from: str | None = None
    seed: int = 0

    def config(self) -> MoTConfig:
        config = preset_config(self.preset, self.overrides)
        if self.ue_checkpoint is not None:
            config = dataclasses.replace(
                config, ue=dataclasses.replace(config.ue, checkpoint=str(self.ue_checkpoint))
            )
        return config

    def build(self, *, device: torch.device | str = "cpu") -> MoTBackbone:
        if self.init_from is not None:
            return load_pretrained(self.init_from, device=device, ue_checkpoint=self.ue_checkpoint)
        config = self.config()
        ue = FrozenQwen3VLExpert.from_config(config.ue, device=device)
        return MoTBackbone(ue, build_action_expert(config, ue.geometry, seed=self.seed, device=device))


def with_head(ae: ActionExpert, name: str, head_kwargs: dict[str, Any] | None = None) -> ActionExpert:
    """Give `ae` the head registered as `name`, in place; the AE's own weights are untouched.

    A "diffusion" head is built around the AE's current MLP head (shared, so the coarse plan is the
    trained one); "mlp" unwraps a diffusion head back to its prior; other names build a fresh head.
    The AE's config is updated so that a saved checkpoint rebuilds the same head.
    """
    head_kwargs = dict(head_kwargs or {})
    current = ae.head
    mlp = current if isinstance(current, MLPHead) else getattr(current, "prior", None)
    if name == "diffusion" and isinstance(mlp, MLPHead):
        head = DiffusionHead.from_mlp_head(mlp, **head_kwargs)
    elif name == "mlp" and isinstance(mlp, MLPHead) and not head_kwargs:
        head = mlp
        head.requires_grad_(True)
    else:
        head = build_head(name, ae.context_dims, **head_kwargs)
    ae.head = head.to(next(ae.parameters()).device)
    stored = config_to_dict(head.config) if dataclasses.is_dataclass(head.config) else head_kwargs
    ae.config = dataclasses.replace(ae.config, head=name, head_kwargs=stored)
    return ae


def save_pretrained(ae: ActionExpert, directory: str | os.PathLike) -> Path:
    """Write the policy folder atomically: a complete folder appears under `directory` or nothing does."""
    with atomic_directory(directory) as tmp:
        save_action_expert(ae, tmp)
    return Path(directory)


def load_weights(ae: ActionExpert, directory: str | os.PathLike) -> ActionExpert:
    """Load a policy folder's weights into an existing AE; any missing, unexpected or mis-shaped key
    (another preset, another head) raises `ValueError` listing them. Nothing is dropped silently."""
    path = Path(directory) / WEIGHTS
    load_state_dict_strict(ae, load_safetensors(path), source=str(path))
    return ae


def load_pretrained(
    directory: str | os.PathLike, *, device: torch.device | str = "cpu", ue_checkpoint: str | None = None
) -> MoTBackbone:
    """A policy folder -> MoTBackbone (frozen UE from the folder's config, or `ue_checkpoint` if given)."""
    directory = Path(directory)
    if not (directory / CONFIG).exists():
        raise ValueError(f"policy: expected a policy folder with {CONFIG} at {directory}, found none")
    ae = load_action_expert(directory, device=device)
    ue_config: QwenUEConfig = ae.config.ue
    if ue_checkpoint is not None:
        ue_config = dataclasses.replace(ue_config, checkpoint=str(ue_checkpoint))
    ue = FrozenQwen3VLExpert.from_config(ue_config, device=device)
    return MoTBackbone(ue, ae)
