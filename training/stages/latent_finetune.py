"""Fine-tuning on labeled data after latent-action pretraining (or from scratch, for the comparison).

The AE (and its planning head) learn exactly as in `ActionExpertStage`: decision NLL + the head's
trajectory loss on the expert labels. Batches are labeled `TransitionBatch`es (offsets 1/2/3 s,
`require_future=False`), so a pretrained and a from-scratch run read the same samples in the same
order; the labels come from `batch.driving`.

With `lam` given, the teacher's latent-action head (from the `init_from` folder, or a fresh one) is
kept aligned with the changing AE: it is trained on the LAM's codes of the same batches from the
*detached* decision latents, so the AE's update is exactly the usual one (the head's gradients are
clipped apart from the AE's). `latent_weight` > 0 instead lets the latent loss into the AE too.

`pretrained_lr_scale` multiplies the learning rate of the AE's layers outside its planning head (the
layers `init_from` brought; the head is trained at the full rate), for a gentler fine-tuning of a
pretrained trunk.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from latent.lam import LatentActionModel, batch_speeds, load_lam
from latent.latent_head import LatentActionHead, LatentHeadConfig, latent_action_nll, load_latent_head
from training.optim import OptimConfig, lightning_optimizers
from training.policy import BackboneSpec
from training.stages.action_expert import ActionExpertStage
from training.stages.latent_pretrain import lam_targets, pretraining_offsets
from training.teacher import save_teacher


def is_trunk(name: str) -> bool:
    """Is the parameter `name` (of the stage's {"ae", "latent_head"} module dict) in the AE outside its
    planning head?"""
    return name.startswith("ae.") and not name.startswith("ae.head.")


class LatentFinetuneStage(ActionExpertStage):
    def __init__(
        self,
        backbone: BackboneSpec | None = None,
        head: str = "mlp",
        head_kwargs: dict[str, Any] | None = None,
        lam: str | None = None,
        latent_weight: float = 0.0,
        pretrained_lr_scale: float = 1.0,
        decision_weight: float = 1.0,
        trajectory_weight: float = 1.0,
        optim: OptimConfig | None = None,
        protocol: str = "stp3",
        sampling_seed: int = 0,
        export_dir: str | None = None,
        ue_store: str | None = None,
    ) -> None:
        backbone = backbone if backbone is not None else BackboneSpec()
        super().__init__(
            backbone=backbone,
            head=head,
            head_kwargs=head_kwargs,
            decision_weight=decision_weight,
            trajectory_weight=trajectory_weight,
            optim=optim,
            protocol=protocol,
            sampling_seed=sampling_seed,
            export_dir=export_dir,
            ue_store=ue_store,
        )
        if latent_weight < 0:
            raise ValueError(f"latent_weight: expected >= 0, got {latent_weight}")
        self.latent_weight = latent_weight
        if not pretrained_lr_scale > 0:
            raise ValueError(f"pretrained_lr_scale: expected > 0, got {pretrained_lr_scale}")
        self.pretrained_lr_scale = float(pretrained_lr_scale)
        self._frozen: tuple[LatentActionModel, ...] = ()
        self.latent_head: LatentActionHead | None = None
        if lam is not None:
            model = load_lam(lam).requires_grad_(False)
            pretraining_offsets(model)  # the LAM's spacing must be the decision horizons'
            self._frozen = (model,)
            loaded = load_latent_head(backbone.init_from) if backbone.init_from else None
            config = LatentHeadConfig(
                self.ae.config.ae.hidden_size, model.config.num_tokens, model.config.vq.codebook_size
            )
            if loaded is not None and loaded.config != config:
                raise ValueError(
                    f"latent head of {backbone.init_from}: expected {config}, got {loaded.config}"
                )
            self.latent_head = (loaded if loaded is not None else LatentActionHead(config)).requires_grad_(
                True
            )
            self.latent_head.train()

    @property
    def lam(self) -> LatentActionModel | None:
        return self._frozen[0] if self._frozen else None

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.lam is not None:
            self.lam.to(self.device).eval()

    on_validation_start = on_fit_start

    @staticmethod
    def _driving(batch):
        driving = getattr(batch, "driving", None)
        if driving is None:
            raise ValueError(
                "LatentFinetuneStage: expected labeled TransitionBatches (read with labels=True), got one without labels"
            )
        return driving

    def losses(self, batch) -> dict[str, torch.Tensor]:
        driving = self._driving(batch)
        out = self.forward_ae(driving, with_plan=False)
        dec = self.decision_loss(out, driving)
        traj = self.ae.head.loss(out.context, self.plan_target(driving))
        loss = self.decision_weight * dec["loss"] + self.trajectory_weight * traj["loss"]
        parts = {"decision_nll": dec["loss"], **{k: v for k, v in traj.items() if k != "loss"}}
        if self.latent_head is not None:
            frames, mask = batch.frames.to(self.device), batch.future_mask.to(self.device)
            speeds = batch_speeds(self.lam, batch, "LatentFinetuneStage")
            codes = lam_targets(self.lam, frames, mask, None if speeds is None else speeds.to(self.device))
            latents = out.context.decision_latents
            if self.latent_weight == 0:
                latents = latents.detach()  # the head follows the AE; the AE does not see this loss
            lat = latent_action_nll(self.latent_head(latents), codes)
            loss = loss + (self.latent_weight or 1.0) * lat["loss"]
            parts.update({"latent_nll": lat["loss"], "latent_accuracy": lat["accuracy"]})
        return {"loss": loss, **parts}

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        parts = self.losses(batch)
        b = batch.batch_size
        self.log("train/loss", parts["loss"], prog_bar=True, batch_size=b)
        self.log_dict({f"train/{k}": v for k, v in parts.items() if k != "loss"}, batch_size=b)
        return parts["loss"]

    def validation_step(self, batch, batch_idx: int) -> None:
        super().validation_step(self._driving(batch), batch_idx)

    def configure_optimizers(self) -> dict[str, Any]:
        modules = {"ae": self.ae}
        if self.latent_head is not None:
            modules["latent_head"] = self.latent_head
        scale = self.pretrained_lr_scale
        if scale == 1.0:
            return lightning_optimizers(nn.ModuleDict(modules), self.optim, self.trainer)
        return lightning_optimizers(
            nn.ModuleDict(modules), self.optim, self.trainer, lambda name: scale if is_trunk(name) else 1.0
        )

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        clip = self.optim.grad_clip if gradient_clip_val is None else gradient_clip_val
        if not clip:
            return
        # The AE's gradient norm (and so its clipped update) must not depend on the latent head's.
        torch.nn.utils.clip_grad_norm_([p for p in self.ae.parameters() if p.grad is not None], clip)
        if self.latent_head is not None:
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.latent_head.parameters() if p.grad is not None], clip
            )

    def save_pretrained(self, directory: str) -> None:
        with self.evaluation_weights():
            save_teacher(self.ae, self.latent_head, directory)
