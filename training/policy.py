"""Build, re-head, save and load a driving policy: the frozen UE + the trained AE with its head.

A *policy folder* is `mot.checkpoint`'s AE checkpoint (`action_expert.safetensors` + `mot_config.json`,
whose `ue.checkpoint` names the frozen UE folder, or is empty for an in-code UE) and nothing else:
weights in safetensors, config in JSON, never a pickle, plus the export manifest
(`automot_export.json`). `save_pretrained` never destroys: see `automot.export`.

`BackboneSpec` is the YAML-friendly recipe the training stages receive; `with_head` swaps the planning
head of a trained AE, wrapping its MLP head when the new head refines a prior (`refines_prior`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from automot.export import check_export_target, export_directory
from automot.io import load_safetensors, load_state_dict_strict
from heads import MLPHead, build_head, head_class
from mot.action_expert import ActionExpert, build_action_expert
from mot.backbone import MoTBackbone
from mot.checkpoint import CONFIG, WEIGHTS, load_action_expert, locate_ue_checkpoint, save_action_expert
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

    Only what `PlanningHead` declares is used: a head class with `refines_prior` is built around the
    AE's current MLP head (`cls.from_mlp_head`, weights shared, so the coarse plan is the trained one);
    "mlp" unwraps a refining head back to its `prior_head`; any other head is built fresh. The AE's
    config is updated (`head`, `head_kwargs` from `export_config()`) so that a saved policy rebuilds
    the same head, and the policy folder records the head's module (see `mot.checkpoint`).
    """
    head_kwargs = dict(head_kwargs or {})
    cls = head_class(name)
    current = ae.head
    mlp = current if isinstance(current, MLPHead) else current.prior_head
    if cls.refines_prior and isinstance(mlp, MLPHead):
        head = cls.from_mlp_head(mlp, **head_kwargs)
    elif name == "mlp" and isinstance(mlp, MLPHead) and not head_kwargs:
        head = mlp
        head.requires_grad_(True)
    else:
        head = build_head(name, ae.context_dims, **head_kwargs)
    ae.head = head.to(next(ae.parameters()).device)
    ae.config = dataclasses.replace(ae.config, head=name, head_kwargs=head.export_config())
    return ae


POLICY_EXPORT = "policy"


def _legacy_policy(path: Path) -> bool:
    """A policy folder written before export manifests existed."""
    return (path / CONFIG).is_file()


def check_policy_target(directory: str | os.PathLike, *, field: str = "export_dir") -> None:
    """Refuse (`ValueError`) a policy destination that is a file or a folder of something else."""
    check_export_target(directory, POLICY_EXPORT, field=field, legacy=_legacy_policy)


def save_pretrained(ae: ActionExpert, directory: str | os.PathLike, *, field: str = "export_dir") -> Path:
    """Write the policy folder (`automot.export`): a new folder appears atomically; a previous policy
    export is replaced file by file, keeping everything else in the folder; any other non-empty folder
    or a file is refused with `ValueError` before anything is written."""
    with export_directory(directory, POLICY_EXPORT, field=field, legacy=_legacy_policy) as tmp:
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
    """A policy folder -> MoTBackbone (frozen UE from the folder's config, found by
    `mot.checkpoint.locate_ue_checkpoint`, or `ue_checkpoint` if given)."""
    directory = Path(directory)
    if not (directory / CONFIG).exists():
        raise ValueError(f"policy: expected a policy folder with {CONFIG} at {directory}, found none")
    ae = load_action_expert(directory, device=device)
    ue_config: QwenUEConfig = ae.config.ue
    if ue_checkpoint is not None:
        ue_config = dataclasses.replace(ue_config, checkpoint=str(ue_checkpoint))
    elif ue_config.checkpoint is not None:
        ue_config = dataclasses.replace(
            ue_config, checkpoint=locate_ue_checkpoint(directory, ue_config.checkpoint)
        )
    ue = FrozenQwen3VLExpert.from_config(ue_config, device=device)
    if _stale(ae.config.ue.checkpoint, ue_config.checkpoint):
        # The recorded path no longer names the UE in use (the study moved, or another working
        # directory): record the one used, so a policy exported from this AE (a refiner around it,
        # a fine-tuned round) names a UE folder that exists, relative to itself too.
        ae.config = dataclasses.replace(ae.config, ue=ue_config)
    return MoTBackbone(ue, ae)


def _stale(recorded: str | None, used: str | None) -> bool:
    """Does the recorded UE path fail to name the folder actually used?"""
    if recorded is None or used is None:
        return recorded != used
    return not Path(recorded).is_dir() or Path(recorded).resolve() != Path(used).resolve()
