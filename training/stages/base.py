"""What the policy stages share: the backbone (frozen UE + trainable AE), validation with the
open-loop metrics, AdamW + warm-up/cosine, gradient clipping, an optional EMA used for evaluation,
and export of the trained policy folder.

A stage is thin: it decides what is trainable and what the loss is; everything else is here.
Batches are `driving.DrivingBatch`; the stages read `sensors`, `waypoints`, `route`, the decision labels
(`lateral`, `longitudinal`, `longitudinal3`) and, for the collision metric, `agent_boxes`, `agent_mask`, `ego_size`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import lightning as L
import torch

from automot.checks import check_choice
from driving.config import BEV_OPTIONS
from heads import PlanTarget
from mot.action_expert import MoTOutput
from mot.backbone import MoTBackbone
from mot.decision import decision_nll
from training.metrics import CollisionRate, DecisionAccuracy, PlanL2
from training.optim import OptimConfig, ParameterEMA, lightning_optimizers
from training.policy import check_policy_target, save_pretrained
from training.run_folders import check_run_folders
from training.step_rng import CHECKPOINT_KEY, draw_train_seed, step_generator, step_global_rng
from training.ue_memo import DEFAULT_MEMO_BYTES, UEMemo
from training.ue_store import UEStore


class PolicyStage(L.LightningModule):
    def __init__(
        self,
        backbone: MoTBackbone,
        *,
        optim: OptimConfig | None = None,
        protocol: str = "stp3",
        sampling_seed: int = 0,
        export_dir: str | None = None,
        ue_memo_items: int = 200_000,
        ue_memo_bytes: int | None = DEFAULT_MEMO_BYTES,
        train_seed: int | None = None,
        ue_store: str | None = None,
    ) -> None:
        """`ue_store`: a folder for the frozen UE's per-sample caches shared with other runs on the same
        data (`training.ue_store`), or None (memoised in memory only). `ue_memo_items` /
        `ue_memo_bytes`: how much of the UE's per-sample caches is kept in host memory
        (`training.ue_memo.UEMemo`; 4 GiB by default)."""
        super().__init__()
        check_choice("protocol", protocol, ("stp3", "uniad"))
        self.backbone = backbone
        self.ae = backbone.ae  # the only registered (trainable, checkpointed) network
        self.optim = optim if optim is not None else OptimConfig()
        self.sampling_seed = sampling_seed
        if export_dir is not None:
            check_policy_target(export_dir)  # refused now, not after training
        self.export_dir = export_dir
        self.val_l2 = PlanL2(protocol)
        self.val_collision = CollisionRate(protocol)
        self.val_decision = DecisionAccuracy()
        self.ema: ParameterEMA | None = None
        # Weights to export instead of the final ones (set by a selecting callback, e.g. ClosedLoopValidation).
        self.export_state: dict[str, torch.Tensor] | None = None
        self._val_generator: torch.Generator | None = None
        store = UEStore(ue_store, backbone.ue) if ue_store is not None else None
        self.ue_memo = UEMemo(backbone.ue, max_items=ue_memo_items, max_bytes=ue_memo_bytes, store=store)
        # The seed of the training noise (a diffusion head's t and perturbation draws). None: drawn
        # from torch's global RNG now, so `seed_everything` decides it; checkpoints store it.
        if train_seed is None:
            train_seed = draw_train_seed()
        self.train_seed = int(train_seed)

    # -- setup ------------------------------------------------------------------------------------
    def setup_ema(self) -> None:
        """Call after the stage has decided what is trainable."""
        if self.optim.ema_decay is not None:
            self.ema = ParameterEMA(self.ae, self.optim.ema_decay)

    @property
    def ue(self):
        return self.backbone.ue

    def on_fit_start(self) -> None:
        if self._trainer is not None:  # a stage driven by hand (tests) has no run folders to check
            check_run_folders(self.trainer, self.export_dir)  # before any training, not at export time
        self._move_ue()

    def on_validation_start(self) -> None:
        self._move_ue()

    def _move_ue(self) -> None:
        # The frozen UE is not a submodule (it is never trained or checkpointed), so Lightning does
        # not move it: put it on this process's device once.
        if self.ue.device != self.device:
            self.ue.to(self.device)

    def decision_targets(self, batch) -> tuple[torch.Tensor | None, torch.Tensor]:
        if self.ae.config.decision_set == "longitudinal3":
            return None, batch.longitudinal3
        return batch.lateral, batch.longitudinal

    # -- forward pieces ---------------------------------------------------------------------------
    def forward_ae(
        self,
        batch,
        *,
        with_plan: bool,
        generator: torch.Generator | None = None,
        hidden: tuple[str, ...] = (),
    ) -> MoTOutput:
        sensors = batch.sensors.to(self.device)
        cache = self.ue_memo.prefill(sensors, UEMemo.sample_keys(batch))  # frozen UE, memoised per sample
        return self.ae(sensors, cache, generator=generator, with_plan=with_plan, hidden=hidden)

    def decision_loss(self, out: MoTOutput, batch) -> dict[str, torch.Tensor]:
        lateral, longitudinal = self.decision_targets(batch)
        return decision_nll(out.lateral_logits, out.longitudinal_logits, lateral, longitudinal)

    @staticmethod
    def plan_target(batch) -> PlanTarget:
        return PlanTarget(
            waypoints=batch.waypoints,
            route=batch.route,
            agent_boxes=batch.agent_boxes,
            agent_mask=batch.agent_mask,
            ego_size=batch.ego_size,
        )

    # -- training ---------------------------------------------------------------------------------
    def step_generator(self) -> torch.Generator:
        """The generator of this optimisation step's training noise: a function of (train_seed,
        global_step) only, so a run resumed from any checkpoint draws exactly the noise an
        uninterrupted run draws (nothing depends on the global RNG or on where a run was killed)."""
        return step_generator(self.train_seed, self.global_step, self.device)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.train_seed

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if CHECKPOINT_KEY in checkpoint:
            self.train_seed = int(checkpoint[CHECKPOINT_KEY])

    def losses(self, batch) -> dict[str, torch.Tensor]:
        """{"loss": scalar to minimise, ...named parts}; each stage defines its own."""
        raise NotImplementedError

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        # Global-RNG draws in the step (dropout in a plug-in head, ...) depend on (train_seed, step) only.
        with step_global_rng(self.train_seed, self.global_step, self.device):
            parts = self.losses(batch)
        b = batch.waypoints.shape[0]
        self.log("train/loss", parts["loss"], prog_bar=True, batch_size=b)
        self.log_dict({f"train/{k}": v for k, v in parts.items() if k != "loss"}, batch_size=b)
        return parts["loss"]

    # -- optimisation -----------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        return lightning_optimizers(self.ae, self.optim, self.trainer)

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        clip = self.optim.grad_clip if gradient_clip_val is None else gradient_clip_val
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    def on_train_start(self) -> None:
        # What the training data's BEV shows (blinkers, motion trails: `BEV_OPTIONS`) travels
        # with the policy too, so an evaluation drives it in the same world; fine-tuning on data that
        # differs from what it was trained on is refused.
        datasets = getattr(getattr(self.trainer, "datamodule", None), "datasets", None) or {}
        options = getattr(datasets.get("train"), "bev_options", None)
        if options is None:
            return
        recorded = self.ae.sensor_options
        if recorded is not None:  # a trained policy: an option it does not record had its default
            for name, value in options.items():
                expected = recorded.get(name, BEV_OPTIONS[name])
                if expected != value:
                    raise ValueError(
                        f"training data: expected sensors.bev.{name}={expected} as the policy was "
                        f"trained with, got {value}"
                    )
        # Blinkers are always recorded (as before), the other options only when set.
        shown = {k: v for k, v in options.items() if k == "turn_signals" or v != BEV_OPTIONS[k]}
        self.ae.sensor_options = {**(recorded or {}), **shown}

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # The sensor sizes the policy is trained with travel with it (policy folder, `input_shapes`);
        # the AE refuses other sizes from then on, naming both.
        if self.ae.input_shapes is None:
            self.ae.input_shapes = batch.sensors.shapes()

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        # Here, not in on_train_batch_end: Lightning runs the callbacks' on_train_batch_end (and so
        # ModelCheckpoint's save) before the module's, so an update there would be missing from the
        # step's checkpoint and a resumed run's EMA would lag by one update per resume. Once per
        # optimiser step, also under gradient accumulation.
        if self.ema is not None:
            self.ema.update(self.ae)

    @contextlib.contextmanager
    def evaluation_weights(self):
        """The EMA weights when EMA is on, else the live ones."""
        if self.ema is None:
            yield
        else:
            with self.ema.swapped(self.ae):
                yield

    # -- validation -------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        # The sampling seed fixes the diffusion head's noise for the whole validation pass.
        self._val_generator = torch.Generator(device=self.device).manual_seed(self.sampling_seed)

    def validation_step(self, batch, batch_idx: int) -> None:
        with self.evaluation_weights():
            out = self.forward_ae(batch, with_plan=True, generator=self._val_generator)
        self.update_metrics(out, batch)

    def update_metrics(self, out: MoTOutput, batch) -> None:
        from driving.collision import plan_collisions

        waypoints = out.plan.waypoints.float()
        self.val_l2.update(waypoints, batch.waypoints.to(waypoints.device))
        collided = plan_collisions(waypoints, batch.agent_boxes, batch.agent_mask, batch.ego_size)
        self.val_collision.update(collided)
        lateral, longitudinal = self.decision_targets(batch)
        self.val_decision.update(out.lateral_logits, out.longitudinal_logits, lateral, longitudinal)

    def on_validation_epoch_end(self) -> None:
        for metric in (self.val_l2, self.val_collision, self.val_decision):
            values = {f"val/{k}": v.float() for k, v in metric.compute().items()}
            self.log_dict(values, prog_bar=metric is self.val_l2, sync_dist=False)
            metric.reset()

    # -- export -----------------------------------------------------------------------------------
    def on_train_end(self) -> None:
        # DDP keeps parameters identical but lets each rank update its own buffers (BatchNorm running
        # statistics) after rank 0's were broadcast at the start of the step. Rank 0's buffers are
        # the authoritative ones (they are what DDP broadcasts and what rank 0 exports): copy them to
        # every rank so all processes end with the same network. (SyncBatchNorm is GPU-only.)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for buffer in self.ae.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def on_fit_end(self) -> None:
        if self.export_dir is not None and self.trainer.is_global_zero:
            self.save_pretrained(self.export_dir)

    def save_pretrained(self, directory: str) -> None:
        """The policy folder (safetensors + JSON) with the evaluation weights (EMA when on), or the
        selected `export_state` when a callback chose one."""
        if self.export_state is None:
            with self.evaluation_weights():
                save_pretrained(self.ae, directory)
            return
        live = {k: v.detach().clone() for k, v in self.ae.state_dict().items()}
        self.ae.load_state_dict(self.export_state)
        try:
            save_pretrained(self.ae, directory)
        finally:
            self.ae.load_state_dict(live)
