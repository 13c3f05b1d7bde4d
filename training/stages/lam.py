"""Latent action model stage (LatentVLA / UniVLA stage 1): learn discrete latent actions from pairs
of observations H apart, with no label of any kind.

    loss = recon(o_{t+H} | o_t, codes) + codebook + beta * commitment       (`latent.lam`)
           [+ odometry_weight * (predicted - true speed change)^2   with `LAMConfig.odometry`]

Batches are observations-only `latent.data.TransitionBatch`es with one future frame; a batch that
carries labels is refused (`latent.data.observations_only`). Validation logs the reconstruction
error next to the copy-current-frame baseline's on the same frames (`val/recon_mse`,
`val/copy_mse`) and the codebook's perplexity and usage over the validation set; with odometry also
the speed change's RMSE next to the no-change baseline's (`val/speed_rmse`, `val/speed_zero_rmse`;
batches read with `speeds=True`). The LAM folder
(safetensors + JSON) is exported at the end of `fit`.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from latent.config import LAMConfig
from latent.data import observations_only
from latent.lam import LatentActionModel, batch_speeds, save_lam
from latent.vq import code_statistics
from training.optim import OptimConfig, lightning_optimizers


class LAMStage(L.LightningModule):
    def __init__(
        self,
        lam: LAMConfig | dict[str, Any] | None = None,
        image_size: tuple[int, int] = (64, 64),
        optim: OptimConfig | None = None,
        export_dir: str | None = None,
    ) -> None:
        super().__init__()
        config = lam if isinstance(lam, LAMConfig) else LAMConfig(**(lam or {}))
        self.lam = LatentActionModel(config, tuple(image_size))
        self.optim = optim if optim is not None else OptimConfig(lr=1e-3, warmup_steps=50)
        self.export_dir = export_dir
        self._val: dict[str, list] = {}

    def _pair(self, batch, who: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        batch = observations_only(batch, who)
        if batch.frames.shape[1] != 2:
            raise ValueError(
                f"{who}: expected frames (B, 2, C, H, W) (one future offset), got {tuple(batch.frames.shape)}"
            )
        return batch.frames[:, 0], batch.frames[:, 1], batch_speeds(self.lam, batch, who)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        obs, future, speeds = self._pair(batch, "LAMStage")
        out = self.lam(obs, future, speeds)
        b = obs.shape[0]
        self.log("train/loss", out.loss, prog_bar=True, batch_size=b)
        extra = {"train/speed": out.speed_loss} if speeds is not None else {}
        self.log_dict(
            {
                "train/recon": out.recon_loss,
                "train/codebook": out.vq.codebook_loss,
                "train/commitment": out.vq.commitment_loss,
                "train/batch_perplexity": code_statistics(out.codes.detach(), self.lam.vq.size)["perplexity"],
                **extra,
            },
            batch_size=b,
        )
        return out.loss

    def on_validation_epoch_start(self) -> None:
        self._val = {"codes": [], "recon": [], "copy": [], "speed": [], "zero": [], "n": []}

    def validation_step(self, batch, batch_idx: int) -> None:
        obs, future, speeds = self._pair(batch, "LAMStage")
        out = self.lam(obs, future, speeds)
        target = self.lam.prepare("future", future)
        current = self.lam.prepare("obs", obs)
        self._val["codes"].append(out.codes)
        self._val["recon"].append((out.prediction - target).pow(2).mean(dim=(1, 2, 3)).sum())
        self._val["copy"].append((current - target).pow(2).mean(dim=(1, 2, 3)).sum())
        if speeds is not None:
            change = speeds[:, 1] - speeds[:, 0]
            self._val["speed"].append((out.speed_change - change).pow(2).sum())
            self._val["zero"].append(change.pow(2).sum())
        self._val["n"].append(obs.shape[0])

    def on_validation_epoch_end(self) -> None:
        if not self._val.get("n"):
            return
        n = sum(self._val["n"])
        stats = code_statistics(torch.cat(self._val["codes"]), self.lam.vq.size)
        speed = {}
        if self._val["speed"]:
            speed = {
                "val/speed_rmse": (torch.stack(self._val["speed"]).sum() / n).sqrt(),
                "val/speed_zero_rmse": (torch.stack(self._val["zero"]).sum() / n).sqrt(),
            }
        self.log_dict(
            {
                "val/recon_mse": torch.stack(self._val["recon"]).sum() / n,
                "val/copy_mse": torch.stack(self._val["copy"]).sum() / n,
                "val/perplexity": stats["perplexity"],
                "val/usage": stats["usage"],
                **speed,
            },
            prog_bar=True,
        )

    def configure_optimizers(self) -> dict[str, Any]:
        return lightning_optimizers(self.lam, self.optim, self.trainer)

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        if self.optim.grad_clip:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.optim.grad_clip, gradient_clip_algorithm="norm"
            )

    def on_fit_end(self) -> None:
        if self.export_dir is not None and self.trainer.is_global_zero:
            save_lam(self.lam, self.export_dir)
