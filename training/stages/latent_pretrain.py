"""Latent-action pretraining of the action expert (LatentVLA: the VLM learns to predict latent-action
sequences without any annotation). The UE is frozen as in the AE stage; the AE and a latent-action
head learn to predict, from the current observation alone, the codes a frozen LAM assigns to the
next K transitions o_t -> o_{t+H} -> ... -> o_{t+K H} (K = the AE's decision queries, H = 1 s):

    loss = mean over (horizon, token) of CE(latent_head(decision_latent_k), LAM code_k)
           + speed_weight * mean over horizons of |speed_head(decision_latent_k) - v(t + k H)| / 10

The second term (off by default; a library choice, not LatentVLA's) also asks each decision query for
the ego speed at its horizon, read from the future observations' ego state (odometry of the unlabeled
episodes, not an expert label): a target the AE cannot predict without reading the ego token, which
the LAM's codes alone let the shared layers ignore (docs/latent.md). The speed head is not exported.

`plan_weight` (off by default; a library choice): the AE's waypoint queries, which the planning head
reads and which the decision-query readout above leaves untrained (they come after the decision
queries in the hybrid mask, so no loss reaches them), also predict the LAM's codes, each those of the
transition its time falls in (waypoints at 0.5 / 1.0 s -> the first transition, 1.5 / 2.0 s -> the
second, 2.5 / 3.0 s -> the third), through a latent-action head of their own that is not exported:

    + plan_weight * mean over (waypoint, token) of CE(plan_latent_head(waypoint_latent_i), LAM code_k(i))

`hidden` (off by default; also a library choice) keeps action-token groups out of the pretraining's
attention, e.g. ("ego",): no pretrained layer reads the ego token, whose encoder stays at its
initialisation, and the fine-tuning meets the token fresh instead of as one the layers learned to
ignore (`ActionExpert.attention_mask`).

Batches are observations-only `TransitionBatch`es with offsets (H, 2H, ..., K H) and sensors; a batch
that carries labels is refused. The LAM is not a submodule (never trained, never checkpointed: its
folder is the record). The export is a teacher folder (`training.teacher`): the policy folder with
the pretrained AE (its planning head untrained) plus the latent-action head.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from automot import spec
from latent.data import observations_only
from latent.lam import LatentActionModel, batch_speeds, load_lam
from latent.latent_head import IGNORE_INDEX, LatentActionHead, LatentHeadConfig, latent_action_nll
from training.optim import OptimConfig, build_optimizer, build_scheduler
from training.policy import BackboneSpec
from training.stages.base import PolicyStage
from training.teacher import save_teacher

SPEED_SCALE = 10.0  # m/s: the speed term's unit, so it sits near the code NLL's size


def pretraining_offsets(lam: LatentActionModel) -> tuple[float, ...]:
    """The future offsets (s) whose transitions the decision queries predict: H, 2H, ..., K H, which
    must be the decision horizons (so query k predicts the transition ending at horizon k)."""
    h = lam.config.horizon_s
    offsets = tuple(h * (k + 1) for k in range(len(spec.DECISION_HORIZONS_S)))
    if any(abs(a - b) > 1e-9 for a, b in zip(offsets, spec.DECISION_HORIZONS_S)):
        raise ValueError(
            f"lam.horizon_s: expected the spacing of the decision horizons {spec.DECISION_HORIZONS_S} "
            f"({spec.DECISION_HORIZONS_S[0]} s), got {h}"
        )
    return offsets


def waypoint_transitions(horizon_s: float) -> tuple[int, ...]:
    """The transition whose codes each waypoint query predicts under `plan_weight`: waypoint i (at
    t_i = 0.5 (i + 1) s) -> k = ceil(t_i / H) - 1, the transition (k H, (k + 1) H] holding t_i."""
    k = len(spec.DECISION_HORIZONS_S)
    return tuple(min(k - 1, max(0, math.ceil(t / horizon_s - 1e-9) - 1)) for t in spec.waypoint_times_s())


def lam_targets(
    lam: LatentActionModel,
    frames: torch.Tensor,
    future_mask: torch.Tensor,
    speeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """frames (B, 1 + K, C, H, W), future_mask (B, K) (+ speeds (B, 1 + K) for a LAM with odometry)
    -> codes (B, K, M), IGNORE_INDEX where the transition's end (or start) frame is missing."""
    codes = lam.sequence_codes(frames, speeds)
    start_ok = torch.cat((torch.ones_like(future_mask[:, :1]), future_mask[:, :-1]), dim=1)
    valid = (future_mask & start_ok)[:, :, None].expand_as(codes)
    return torch.where(valid, codes, torch.full_like(codes, IGNORE_INDEX))


class LatentPretrainStage(PolicyStage):
    def __init__(
        self,
        lam: str,
        backbone: BackboneSpec | None = None,
        optim: OptimConfig | None = None,
        export_dir: str | None = None,
        speed_weight: float = 0.0,
        ue_store: str | None = None,
        hidden: tuple[str, ...] = (),
        plan_weight: float = 0.0,
    ) -> None:
        for name, value in (("speed_weight", speed_weight), ("plan_weight", plan_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"LatentPretrainStage.{name}: expected a number >= 0, got {value!r}")
        bb = (backbone if backbone is not None else BackboneSpec()).build()
        super().__init__(bb, optim=optim, export_dir=export_dir, ue_store=ue_store)
        model = load_lam(lam)
        self.offsets_s = pretraining_offsets(model)
        self._frozen = (model.requires_grad_(False),)  # a tuple: not registered as a submodule
        vq = model.config
        self.latent_head = LatentActionHead(
            LatentHeadConfig(self.ae.config.ae.hidden_size, vq.num_tokens, vq.vq.codebook_size)
        )
        if isinstance(hidden, str) or not all(isinstance(h, str) for h in hidden):
            raise ValueError(
                f"LatentPretrainStage.hidden: expected a list of token-group names, got {hidden!r}"
            )
        self.hidden = tuple(hidden)
        for name in self.hidden:
            self.ae.token_columns(name)  # an unknown name is refused here, before any training
        self.speed_weight = float(speed_weight)
        self.speed_head = nn.Linear(self.ae.config.ae.hidden_size, 1) if self.speed_weight > 0 else None
        # Built last, so a stage without it draws every other weight as before.
        self.plan_weight = float(plan_weight)
        self.plan_latent_head = LatentActionHead(self.latent_head.config) if self.plan_weight > 0 else None
        self.waypoint_transitions = waypoint_transitions(model.config.horizon_s)
        self.ae.requires_grad_(True)
        self.setup_ema()
        self._val: dict[str, list] = {}

    @property
    def lam(self) -> LatentActionModel:
        return self._frozen[0]

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.lam.to(self.device).eval()

    on_validation_start = on_fit_start

    def losses(self, batch) -> dict[str, torch.Tensor]:
        batch = observations_only(batch, "LatentPretrainStage")
        if batch.sensors is None:
            raise ValueError("LatentPretrainStage: expected batches read with sensors=True, got sensors=None")
        speeds = batch_speeds(self.lam, batch, "LatentPretrainStage")
        codes = lam_targets(
            self.lam,
            batch.frames.to(self.device),
            batch.future_mask.to(self.device),
            None if speeds is None else speeds.to(self.device),
        )
        out = self.forward_ae(batch, with_plan=False, hidden=self.hidden)
        latents = out.context.decision_latents  # (B, K, D)
        parts = latent_action_nll(self.latent_head(latents), codes)
        acc = parts.pop("accuracy_per_horizon")
        parts = {**parts, **{f"accuracy_{h:g}s": a for h, a in zip(spec.DECISION_HORIZONS_S, acc)}}
        if self.plan_latent_head is not None:
            waypoints = out.context.plan_latents[:, : spec.NUM_WAYPOINTS]  # (B, Nw, D), waypoints first
            plan = latent_action_nll(
                self.plan_latent_head(waypoints), codes[:, list(self.waypoint_transitions)]
            )
            parts["decision_nll"] = parts["loss"]
            parts["plan_nll"], parts["plan_accuracy"] = plan["loss"], plan["accuracy"]
            parts["loss"] = parts["loss"] + self.plan_weight * plan["loss"]
        if self.speed_head is not None:
            if batch.future_speed is None:
                raise ValueError(
                    "LatentPretrainStage: expected batches read with future_speed=True when speed_weight > 0, "
                    "got batches without future_speed"
                )
            speed = batch.future_speed.to(self.device)
            mask = batch.future_mask.to(self.device).to(speed.dtype)
            err = (self.speed_head(latents).squeeze(-1) - speed).abs() / SPEED_SCALE
            parts["speed_l1"] = (err * mask).sum() / mask.sum().clamp_min(1.0)
            parts["latent_nll"] = parts.get("decision_nll", parts["loss"])
            parts["loss"] = parts["loss"] + self.speed_weight * parts["speed_l1"]
        return parts

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        parts = self.losses(batch)
        b = batch.batch_size
        self.log("train/loss", parts["loss"], prog_bar=True, batch_size=b)
        self.log_dict({f"train/latent_{k}": v for k, v in parts.items() if k != "loss"}, batch_size=b)
        return parts["loss"]

    def on_validation_epoch_start(self) -> None:
        self._val = {"loss": [], "accuracy": [], "n": []}

    def validation_step(self, batch, batch_idx: int) -> None:
        with self.evaluation_weights():
            parts = self.losses(batch)
        self._val["loss"].append(parts["loss"] * batch.batch_size)
        self._val["accuracy"].append(parts["accuracy"] * batch.batch_size)
        self._val["n"].append(batch.batch_size)

    def on_validation_epoch_end(self) -> None:
        if not self._val.get("n"):
            return
        n = sum(self._val["n"])
        self.log_dict(
            {
                "val/latent_nll": torch.stack(self._val["loss"]).sum() / n,
                "val/latent_accuracy": torch.stack(self._val["accuracy"]).sum() / n,
            },
            prog_bar=True,
        )

    def configure_optimizers(self) -> dict[str, Any]:
        modules = {"ae": self.ae, "latent_head": self.latent_head}
        if self.speed_head is not None:
            modules["speed_head"] = self.speed_head
        if self.plan_latent_head is not None:
            modules["plan_latent_head"] = self.plan_latent_head
        optimizer = build_optimizer(nn.ModuleDict(modules), self.optim)
        total = int(self.trainer.estimated_stepping_batches) if self.trainer is not None else 1
        scheduler = build_scheduler(optimizer, self.optim, max(1, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def save_pretrained(self, directory: str) -> None:
        with self.evaluation_weights():
            save_teacher(self.ae, self.latent_head, directory)
