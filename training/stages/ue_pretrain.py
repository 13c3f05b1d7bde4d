"""UE scene pretraining, for the offline tiny Qwen3-VL only (training issue; paper section 4.4 context).

No pretrained Qwen3-VL weights exist offline, so this short stage teaches the randomly initialised
understanding expert to describe a scene: given the multi-frame camera history and the navigation
prompt (in exactly the chat format the frozen UE sees later), predict the world's factual scene text
(lead-vehicle gap, free lanes, junction ahead, command) by next-token loss on the answer tokens.
Afterwards the model is saved as an HF folder and loaded frozen by every later stage. With a real
Qwen3-VL checkpoint this stage is skipped; skipping it offline gives the "w/o pretrained UE" ablation.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from automot.config import build_config
from automot.export import check_export_target, export_directory
from mot.config import QwenUEConfig
from mot.presets import preset_config
from mot.qwen_offline import EOS_TOKEN, build_raw_qwen3vl, save_qwen3vl
from mot.understanding import prepare_ue_inputs, ue_prompt_text
from training.optim import OptimConfig, build_optimizer, build_scheduler
from training.run_folders import check_run_folders
from training.step_rng import CHECKPOINT_KEY, draw_train_seed, step_global_rng

IGNORE = -100


class UEPretrainStage(L.LightningModule):
    def __init__(
        self,
        preset: str = "tiny",
        ue: dict[str, Any] | None = None,
        optim: OptimConfig | None = None,
        export_dir: str | None = None,
        train_seed: int | None = None,
    ) -> None:
        super().__init__()
        base = preset_config(preset).ue
        self.ue_config = build_config(QwenUEConfig, {**_as_dict(base), **(ue or {})})
        if self.ue_config.checkpoint is not None:
            raise ValueError(
                "ue.checkpoint: scene pretraining is for the in-code (offline) UE; a real checkpoint skips it"
            )
        self.model, self.processor = build_raw_qwen3vl(self.ue_config)
        self.model.train()
        self.optim = optim if optim is not None else OptimConfig(lr=1e-3, warmup_steps=20)
        if export_dir is not None:
            check_ue_target(export_dir)  # refused now, not after training
        self.export_dir = export_dir
        tok = self.processor.tokenizer
        self._im_start = tok.convert_tokens_to_ids("<|im_start|>")
        # Global-RNG draws of a step (e.g. a UE config with attention dropout) come from (train_seed,
        # step) only (`training.step_rng`); None: drawn now from the global RNG; checkpoints store it.
        self.train_seed = draw_train_seed() if train_seed is None else int(train_seed)

    def lm_inputs(self, sensors, answers: list[str]) -> dict[str, torch.Tensor]:
        """Processor inputs + labels: the UE's prompt (images + navigation prompt) followed by the
        answer; labels are the answer tokens and the end-of-turn token, everything else IGNORE."""
        b, t, v = sensors.rgb_history.shape[:3]
        texts = [
            ue_prompt_text(p, t, v, self.ue_config.system_prompt) + f"{a}{EOS_TOKEN}"
            for p, a in zip(sensors.prompts, answers)
        ]
        images = list(sensors.rgb_history.reshape(b * t * v, *sensors.rgb_history.shape[3:]).cpu())
        inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        inputs = {k: val.to(self.device) for k, val in inputs.items()}
        # The same attention (image blocks, positions) the frozen UE uses later.
        inputs = prepare_ue_inputs(self.model, inputs, self.ue_config.image_attention)
        padding = inputs.pop("padding_mask")
        ids = inputs["input_ids"]
        # The answer starts after the last "<|im_start|> assistant" (left padding: rows end aligned).
        is_start = ids == self._im_start
        last_start = ids.shape[1] - 1 - is_start.flip(1).float().argmax(dim=1)
        positions = torch.arange(ids.shape[1], device=ids.device)[None]
        answer = (positions >= (last_start + 2)[:, None]) & padding.bool()
        inputs["labels"] = torch.where(answer, ids, torch.full_like(ids, IGNORE))
        return inputs

    def _loss(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = self.lm_inputs(batch.sensors, list(batch.scene_text))
        out = self.model(**inputs)
        # Token accuracy on the answer (a readable progress number next to the loss).
        logits, labels = out.logits[:, :-1], inputs["labels"][:, 1:]
        valid = labels != IGNORE
        acc = ((logits.argmax(-1) == labels) & valid).sum() / valid.sum().clamp_min(1)
        return out.loss, acc

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.train_seed

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if CHECKPOINT_KEY in checkpoint:
            self.train_seed = int(checkpoint[CHECKPOINT_KEY])

    def training_step(self, batch, batch_idx: int):
        with step_global_rng(self.train_seed, self.global_step, self.device):
            loss, acc = self._loss(batch)
        b = len(batch.scene_text)
        self.log("train/lm_loss", loss, prog_bar=True, batch_size=b)
        self.log("train/token_acc", acc, batch_size=b)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, acc = self._loss(batch)
        b = len(batch.scene_text)
        self.log("val/lm_loss", loss, prog_bar=True, batch_size=b, sync_dist=True)
        self.log("val/token_acc", acc, batch_size=b, sync_dist=True)

    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.optim)
        total = int(self.trainer.estimated_stepping_batches) if self.trainer is not None else 1
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": build_scheduler(optimizer, self.optim, max(1, total)),
                "interval": "step",
            },
        }

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        if self.optim.grad_clip:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.optim.grad_clip, gradient_clip_algorithm="norm"
            )

    def on_fit_start(self) -> None:
        check_run_folders(self.trainer, self.export_dir)  # before any training, not at export time

    def on_fit_end(self) -> None:
        if self.export_dir is not None and self.trainer.is_global_zero:
            self.save_pretrained(self.export_dir)

    def save_pretrained(self, directory: str) -> None:
        """An HF folder (safetensors + JSON) that `FrozenQwen3VLExpert.from_pretrained` loads frozen,
        written as an export (`automot.export`: nothing else in the folder is touched)."""
        with export_directory(directory, UE_EXPORT, legacy=_legacy_ue) as tmp:
            save_qwen3vl(self.model, self.processor, tmp)


UE_EXPORT = "understanding expert"


def _legacy_ue(path) -> bool:
    """An HF folder written before export manifests existed."""
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def check_ue_target(directory, *, field: str = "export_dir") -> None:
    check_export_target(directory, UE_EXPORT, field=field, legacy=_legacy_ue)


def _as_dict(config: QwenUEConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(config)
