"""Refiner stage (paper appendix A.3): a planning head (the diffusion head by default) built around
a trained AE and its MLP head, trained with the head's loss (L1 on x0 for waypoints and route, eq. 9).

By default the AE is frozen and only the refiner learns. `fine_tune_ae=True` is the paper's
"differentiable refiner": the refiner's loss flows through the prior (the MLP head) into the AE. Here
that means, for a refining head, `differentiable_prior=True` and the prior keeps its own L1 loss
(`prior_loss_weight`, default 1), and the decision NLL stays in the loss with `decision_weight`: the
AE is shaped by the refiner's gradient while its coarse plan and its decisions stay trained, so
they cannot drift. (A frozen prior over a fine-tuned AE would read moving latents with nothing
holding its plan in place; that combination is refused.)

`augment` and `keyframe_weight` are the action-expert stage's options (`training.augment`,
`training.keyframe`) for the refiner: the ego inputs the head reads are perturbed (with a frozen AE,
in the memoised context: the refiner's AdaLN conditioning and the prior's constant-velocity term;
with `fine_tune_ae`, in the sensors, as the AE stage does) and the samples where the expert changes
speed weigh more. Their noise depends only on (train_seed, step), so a resumed run draws the same.
Off by default.

The head swap is this stage's `head` argument: the same trained AE (`policy`) with `head: mlp` is
the MLP baseline, with `head: diffusion` the refined one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from training.augment import EgoAugmentConfig, as_augment_config, augment_context, augment_ego
from training.context_memo import ContextMemo
from training.keyframe import check_keyframe_weight, keyframe_weighting
from training.optim import OptimConfig
from training.policy import BackboneSpec, with_head
from training.stages.base import PolicyStage
from training.step_rng import stream_generator
from training.ue_memo import UEMemo

AUGMENT_STREAM = 0x5EED  # the ego augmentation's generator stream (training.step_rng)


class RefinerStage(PolicyStage):
    def __init__(
        self,
        policy: str,
        head: str = "diffusion",
        head_kwargs: dict[str, Any] | None = None,
        fine_tune_ae: bool = False,
        decision_weight: float = 1.0,
        prior_loss_weight: float = 1.0,
        ue_checkpoint: str | None = None,
        optim: OptimConfig | None = None,
        protocol: str = "stp3",
        sampling_seed: int = 0,
        export_dir: str | None = None,
        augment: EgoAugmentConfig | dict | None = None,
        keyframe_weight: float = 0.0,
        ue_store: str | None = None,
    ) -> None:
        keyframe_weight = check_keyframe_weight(keyframe_weight, field="RefinerStage.keyframe_weight")
        augment = as_augment_config(augment, field="RefinerStage.augment")
        bb = BackboneSpec(init_from=policy, ue_checkpoint=ue_checkpoint).build()
        if fine_tune_ae and head == "diffusion":
            head_kwargs = _differentiable(head_kwargs, prior_loss_weight)
        with_head(bb.ae, head, head_kwargs)
        super().__init__(
            bb,
            optim=optim,
            protocol=protocol,
            sampling_seed=sampling_seed,
            export_dir=export_dir,
            ue_store=ue_store,
        )
        self.fine_tune_ae = fine_tune_ae
        self.decision_weight = decision_weight
        self.context_memo = ContextMemo()
        self.ae.requires_grad_(fine_tune_ae)
        head_module = self.ae.head
        head_module.requires_grad_(True)
        prior = head_module.prior_head
        if prior is not None:
            # The prior follows the head's own setting (frozen unless the head trains it).
            prior.requires_grad_(fine_tune_ae or head_module.trains_prior)
        self.augment = augment
        self.keyframe_weight = keyframe_weight
        self.setup_ema()
        self.train()  # Lightning keeps each module's mode: set it once, here

    def train(self, mode: bool = True) -> RefinerStage:
        """Frozen parts stay in eval mode while training (their normalisation statistics must not drift).
        Lightning restores each module's own mode after validation, so this holds for the whole fit."""
        super().train(mode)
        if mode and not self.fine_tune_ae:
            self.ae.eval()
            head = self.ae.head
            head.train()
            if head.prior_head is not None:
                head.prior_head.eval()
        return self

    def _frozen_context(self, sensors, keys):
        """The frozen AE's action context of `sensors` (UE caches memoised under `keys`)."""
        sensors = sensors.to(self.device)
        return self.ae(sensors, self.ue_memo.prefill(sensors, keys), with_plan=False).context

    def _augment_generator(self) -> torch.Generator:
        """The ego augmentation's noise of this step: a function of (train_seed, step) only, a stream
        apart from the head's training noise (`step_generator`)."""
        return stream_generator(self.train_seed, int(self.global_step), AUGMENT_STREAM)

    def losses(self, batch) -> dict:
        weighting = keyframe_weighting(batch, self.keyframe_weight)  # before any augmentation
        if not self.fine_tune_ae:
            # A frozen AE gives every sample the same context each epoch: compute it once.
            ctx = self.context_memo.get(batch.sensors, UEMemo.sample_keys(batch), self._frozen_context)
            if self.augment.active:
                ctx = augment_context(ctx, self.augment, self._augment_generator())
            parts = self.ae.head.loss(
                ctx, self.plan_target(batch), generator=self.step_generator(), **weighting
            )
            return {"loss": parts["loss"], **{k: v for k, v in parts.items() if k != "loss"}}
        if self.augment.active:
            batch = dataclasses.replace(
                batch, sensors=augment_ego(batch.sensors, self.augment, self._augment_generator())
            )
        out = self.forward_ae(batch, with_plan=False)
        parts = self.ae.head.loss(
            out.context, self.plan_target(batch), generator=self.step_generator(), **weighting
        )
        out_parts = {k: v for k, v in parts.items() if k != "loss"}
        loss = parts["loss"]
        if self.decision_weight > 0:
            dec = self.decision_loss(out, batch)
            loss = loss + self.decision_weight * dec["loss"]
            out_parts["decision_nll"] = dec["loss"]
        return {"loss": loss, **out_parts}


def _differentiable(head_kwargs: dict[str, Any] | None, prior_loss_weight: float) -> dict[str, Any]:
    """The diffusion head's settings of the differentiable refiner (see the module docstring)."""
    kwargs = dict(head_kwargs or {})
    if kwargs.get("differentiable_prior") is False:
        raise ValueError(
            "head_kwargs.differentiable_prior: expected True (or unset) with fine_tune_ae=True (the AE would move "
            "under a frozen prior and its coarse plan would drift), got False"
        )
    if prior_loss_weight <= 0:
        raise ValueError(
            f"prior_loss_weight: expected > 0 with fine_tune_ae=True (it keeps the coarse plan trained), got {prior_loss_weight}"
        )
    kwargs["differentiable_prior"] = True
    kwargs.setdefault("prior_loss_weight", prior_loss_weight)
    return kwargs
