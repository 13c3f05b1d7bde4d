"""Refiner stage (paper appendix A.3): a planning head (the diffusion head by default) built around
a trained AE and its MLP head, trained with the head's loss (L1 on x0 for waypoints and route, eq. 9).

By default the AE is frozen and only the refiner learns. `fine_tune_ae=True` lets the head's loss
flow into the AE (the differentiable refiner); the decision NLL then stays in the loss with
`decision_weight` so the decisions are not forgotten.

The head swap is this stage's `head` argument: the same trained AE (`policy`) with `head: mlp` is
the MLP baseline, with `head: diffusion` the refined one.
"""

from __future__ import annotations

from typing import Any

from training.optim import OptimConfig
from training.policy import BackboneSpec, with_head
from training.stages.base import PolicyStage


class RefinerStage(PolicyStage):
    def __init__(
        self,
        policy: str,
        head: str = "diffusion",
        head_kwargs: dict[str, Any] | None = None,
        fine_tune_ae: bool = False,
        decision_weight: float = 1.0,
        ue_checkpoint: str | None = None,
        optim: OptimConfig | None = None,
        protocol: str = "stp3",
        sampling_seed: int = 0,
        export_dir: str | None = None,
    ) -> None:
        bb = BackboneSpec(init_from=policy, ue_checkpoint=ue_checkpoint).build()
        with_head(bb.ae, head, head_kwargs)
        super().__init__(
            bb, optim=optim, protocol=protocol, sampling_seed=sampling_seed, export_dir=export_dir
        )
        self.fine_tune_ae = fine_tune_ae
        self.decision_weight = decision_weight
        self.ae.requires_grad_(fine_tune_ae)
        head_module = self.ae.head
        head_module.requires_grad_(True)
        prior = head_module.prior_head
        if prior is not None:
            # The prior follows the head's own setting (frozen unless the head trains it).
            prior.requires_grad_(fine_tune_ae or head_module.trains_prior)
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

    def losses(self, batch) -> dict:
        out = self.forward_ae(batch, with_plan=False)
        parts = self.ae.head.loss(out.context, self.plan_target(batch), generator=self.step_generator())
        out_parts = {k: v for k, v in parts.items() if k != "loss"}
        loss = parts["loss"]
        if self.fine_tune_ae and self.decision_weight > 0:
            dec = self.decision_loss(out, batch)
            loss = loss + self.decision_weight * dec["loss"]
            out_parts["decision_nll"] = dec["loss"]
        return {"loss": loss, **out_parts}
