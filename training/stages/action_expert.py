"""Action-expert stage (paper section 3.2): the UE frozen; the AE and its planning head trained
jointly on the token-wise decision NLL (eq. 1) and the trajectory L1 (eq. 2).

    loss = decision_weight * NLL(decisions) + trajectory_weight * head.loss(ctx, expert plan)

`head` names any registered planning head (the MLP head by default; the paper trains the AE with it).
`augment` perturbs the ego inputs of training batches (`training.augment`, off by default); its noise
depends only on (backbone seed, step), so a resumed run draws the same. `keyframe_weight` > 0 weights
each sample's trajectory loss by how much the expert's plan changes speed (`training.keyframe`; the
head's `loss` must take `sample_weight`, as the built-in heads do).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from training.augment import EgoAugmentConfig, as_augment_config, augment_ego
from training.keyframe import check_keyframe_weight, keyframe_weighting
from training.optim import OptimConfig
from training.policy import BackboneSpec, with_head
from training.stages.base import PolicyStage


class ActionExpertStage(PolicyStage):
    def __init__(
        self,
        backbone: BackboneSpec | None = None,
        head: str = "mlp",
        head_kwargs: dict[str, Any] | None = None,
        decision_weight: float = 1.0,
        trajectory_weight: float = 1.0,
        optim: OptimConfig | None = None,
        protocol: str = "stp3",
        sampling_seed: int = 0,
        export_dir: str | None = None,
        augment: EgoAugmentConfig | None = None,
        keyframe_weight: float = 0.0,
        ue_store: str | None = None,
    ) -> None:
        keyframe_weight = check_keyframe_weight(keyframe_weight, field="ActionExpertStage.keyframe_weight")
        augment = as_augment_config(augment, field="ActionExpertStage.augment")
        spec = backbone if backbone is not None else BackboneSpec()
        bb = spec.build()
        if head != bb.ae.config.head or head_kwargs:
            with_head(bb.ae, head, head_kwargs)
        super().__init__(
            bb,
            optim=optim,
            protocol=protocol,
            sampling_seed=sampling_seed,
            export_dir=export_dir,
            ue_store=ue_store,
        )
        if decision_weight < 0 or trajectory_weight < 0 or decision_weight + trajectory_weight == 0:
            raise ValueError(
                "decision_weight, trajectory_weight: expected non-negative weights with a positive sum, "
                f"got {decision_weight}, {trajectory_weight}"
            )
        self.decision_weight, self.trajectory_weight = decision_weight, trajectory_weight
        self.ae.requires_grad_(True)
        self.setup_ema()
        self.augment = augment
        self.augment_seed = spec.seed
        self.keyframe_weight = keyframe_weight

    def losses(self, batch) -> dict:
        weighting = keyframe_weighting(batch, self.keyframe_weight)  # before the augmentation
        if self.augment.active:
            g = torch.Generator().manual_seed(self.augment_seed * 1_000_003 + int(self.global_step))
            batch = dataclasses.replace(batch, sensors=augment_ego(batch.sensors, self.augment, g))
        out = self.forward_ae(batch, with_plan=False)
        dec = self.decision_loss(out, batch)
        traj = self.ae.head.loss(
            out.context, self.plan_target(batch), generator=self.step_generator(), **weighting
        )
        loss = self.decision_weight * dec["loss"] + self.trajectory_weight * traj["loss"]
        return {"loss": loss, "decision_nll": dec["loss"], **{k: v for k, v in traj.items() if k != "loss"}}
