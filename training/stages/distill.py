"""Distillation of a latent-action teacher (frozen UE + AE + planning head + latent-action head) into
the UE-free student planner (`latent.student`).

    loss = w_label_plan     x L1(student plan, expert plan)                 (labeled batches)
         + w_label_decision x NLL(student meta-actions, expert meta-actions) (labeled batches)
         + w_teacher_plan   x L1(student plan, teacher plan)
         + w_latent         x KL(teacher latent-action distribution || student's)   (temperature T)
         + w_embedding      x MSE(student's predicted teacher embeddings, LN(teacher's AE hidden states))

The plan L1s use the MLP head's waypoint weights (3,3,2,2,1,1) and its route L1. The teacher is
not a submodule (frozen, never checkpointed; its UE prefill is memoised per sample like the other
stages'). Which samples' decoders read the teacher's embeddings (probability `teacher_forcing`) is
drawn from a generator seeded by (seed, step), so a resumed run draws what an uninterrupted one
would. Batches: `TransitionBatch`es with sensors; labels are used when they are present.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
import torch

from automot.checks import check_positive
from automot.config import build_config
from heads import PlanTarget
from heads.mlp import plan_l1_loss
from latent.latent_head import soft_latent_kl
from latent.student import StudentConfig, StudentPlanner, normalize_teacher_tokens, save_student
from mot.decision import decision_nll
from training.optim import OptimConfig, lightning_optimizers
from training.teacher import load_teacher
from training.ue_memo import UEMemo
from training.ue_store import UEStore


@dataclass
class DistillWeights:
    label_plan: float = 1.0
    label_decision: float = 1.0
    teacher_plan: float = 1.0
    latent: float = 1.0
    embedding: float = 1.0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        for name in ("label_plan", "label_decision", "teacher_plan", "latent", "embedding"):
            check_positive(f"DistillWeights.{name}", getattr(self, name), allow_zero=True)
        check_positive("DistillWeights.temperature", self.temperature)


class DistillStage(L.LightningModule):
    def __init__(
        self,
        teacher: str,
        student: StudentConfig | dict[str, Any] | None = None,
        weights: DistillWeights | dict[str, Any] | None = None,
        ue_checkpoint: str | None = None,
        optim: OptimConfig | None = None,
        seed: int = 0,
        export_dir: str | None = None,
        ue_store: str | None = None,
    ) -> None:
        """`ue_store`: a folder of the frozen UE's per-sample caches shared with the study's other
        stages (`training.ue_store`), or None (memoised in memory only)."""
        super().__init__()
        backbone, latent_head = load_teacher(teacher, ue_checkpoint=ue_checkpoint)
        backbone.ae.eval().requires_grad_(False)
        if latent_head is not None:
            latent_head.eval().requires_grad_(False)
        self._teacher = (backbone, latent_head)  # a tuple: not registered, never trained or saved
        given = student if isinstance(student, dict) or student is None else vars(student)
        fields = {
            "teacher_tokens": backbone.ae.num_tokens,
            "teacher_dim": backbone.ae.config.ae.hidden_size,
            "decision_set": backbone.ae.config.decision_set,
            **(
                {
                    "latent_tokens": latent_head.config.num_tokens,
                    "codebook_size": latent_head.config.codebook_size,
                }
                if latent_head is not None
                else {}
            ),
        }
        self.student = StudentPlanner(StudentConfig(**{**(given or {}), **fields}))
        self.weights = build_config(DistillWeights, weights)
        self.optim = optim if optim is not None else OptimConfig(lr=1e-3, warmup_steps=50)
        self.seed, self.export_dir = seed, export_dir
        store = UEStore(ue_store, backbone.ue) if ue_store is not None else None
        self.ue_memo = UEMemo(backbone.ue, store=store)

    @property
    def teacher(self):
        return self._teacher[0]

    def on_fit_start(self) -> None:
        backbone, head = self._teacher
        backbone.ue.to(self.device)
        backbone.ae.to(self.device)
        if head is not None:
            head.to(self.device)

    on_validation_start = on_fit_start

    @torch.no_grad()
    def teacher_outputs(self, batch) -> dict[str, torch.Tensor | None]:
        backbone, head = self._teacher
        sensors = batch.sensors.to(self.device)
        cache = self.ue_memo.prefill(sensors, UEMemo.sample_keys(batch))
        out = backbone.ae(sensors, cache, with_plan=True)
        return {
            "tokens": normalize_teacher_tokens(out.latents),
            "waypoints": out.plan.waypoints,
            "route": out.plan.route,
            "latent_logits": None if head is None else head(out.context.decision_latents),
        }

    def losses(self, batch, *, teacher_forcing: bool = True) -> dict[str, torch.Tensor]:
        if getattr(batch, "sensors", None) is None:
            raise ValueError(
                "DistillStage: expected TransitionBatches read with sensors=True, got sensors=None"
            )
        w = self.weights
        t = self.teacher_outputs(batch)
        b = batch.batch_size
        use = None
        if teacher_forcing:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.global_step))
            use = torch.rand(b, generator=g) < self.student.config.teacher_forcing
        s = self.student(batch.sensors, teacher_tokens=t["tokens"], use_teacher=use)
        weights = self.student.head.plan_head.waypoint_weights
        plan_cfg = self.student.head.plan_head.config
        to_teacher = plan_l1_loss(
            s.plan,
            PlanTarget(t["waypoints"], t["route"]),
            weights,
            plan_cfg.waypoint_loss_weight,
            plan_cfg.route_loss_weight,
        )
        parts = {"teacher_plan_l1": to_teacher["loss"]}
        loss = w.teacher_plan * to_teacher["loss"]
        if s.predicted_teacher is not None:
            parts["embedding_mse"] = (s.predicted_teacher - t["tokens"]).pow(2).mean()
            loss = loss + w.embedding * parts["embedding_mse"]
        if s.latent_logits is not None and t["latent_logits"] is not None:
            parts["latent_kl"] = soft_latent_kl(s.latent_logits, t["latent_logits"], w.temperature)
            loss = loss + w.latent * parts["latent_kl"]
        d = getattr(batch, "driving", None)
        if d is not None:
            d = d.to(self.device)
            label = plan_l1_loss(
                s.plan,
                PlanTarget(d.waypoints, d.route),
                weights,
                plan_cfg.waypoint_loss_weight,
                plan_cfg.route_loss_weight,
            )
            lateral = None if s.lateral_logits is None else d.lateral
            longitudinal = d.longitudinal if s.lateral_logits is not None else d.longitudinal3
            dec = decision_nll(s.lateral_logits, s.longitudinal_logits, lateral, longitudinal)
            parts.update({"label_plan_l1": label["loss"], "decision_nll": dec["loss"]})
            loss = loss + w.label_plan * label["loss"] + w.label_decision * dec["loss"]
        return {"loss": loss, **parts}

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        parts = self.losses(batch)
        b = batch.batch_size
        self.log("train/loss", parts["loss"], prog_bar=True, batch_size=b)
        self.log_dict({f"train/{k}": v for k, v in parts.items() if k != "loss"}, batch_size=b)
        return parts["loss"]

    def validation_step(self, batch, batch_idx: int) -> None:
        parts = self.losses(batch, teacher_forcing=False)  # as deployed: predicted embeddings only
        self.log_dict({f"val/{k}": v for k, v in parts.items()}, batch_size=batch.batch_size)

    def configure_optimizers(self) -> dict[str, Any]:
        return lightning_optimizers(self.student, self.optim, self.trainer)

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        if self.optim.grad_clip:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.optim.grad_clip, gradient_clip_algorithm="norm"
            )

    def on_fit_end(self) -> None:
        if self.export_dir is not None and self.trainer.is_global_zero:
            save_student(self.student, self.export_dir)
