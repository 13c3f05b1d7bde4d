"""Optimisation pieces shared by the stages: AdamW with decoupled weight decay on matrices only,
linear warm-up then cosine decay, and an EMA of the trainable weights."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from automot.checks import check_positive


@dataclass
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    # Cosine decay to min_lr_ratio * lr at max_steps (the trainer's estimated total when None).
    max_steps: int | None = None
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    ema_decay: float | None = None  # e.g. 0.999; None = no EMA

    def __post_init__(self) -> None:
        check_positive("OptimConfig.lr", self.lr)
        check_positive("OptimConfig.weight_decay", self.weight_decay, allow_zero=True)
        check_positive("OptimConfig.warmup_steps", self.warmup_steps, allow_zero=True)
        check_positive("OptimConfig.grad_clip", self.grad_clip, allow_zero=True)
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"OptimConfig.min_lr_ratio: expected a value in [0, 1], got {self.min_lr_ratio}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(
                f"OptimConfig.ema_decay: expected None or a value in (0, 1), got {self.ema_decay}"
            )


def param_groups(
    module: nn.Module,
    weight_decay: float,
    lr_scale: Callable[[str], float] | None = None,
    lr: float | None = None,
) -> list[dict]:
    """Trainable parameters split into decayed (matrices) and not decayed (biases, norms, embeddings, scalars).

    lr_scale: maps a parameter's name to its learning-rate multiplier (None: 1 for all, and the groups
    carry no "lr" of their own); each distinct multiplier gets its own pair of groups with
    `"lr": lr * multiplier` (`lr`, the base learning rate, is then required).
    """
    if lr_scale is not None and lr is None:
        raise ValueError("param_groups: expected the base lr with an lr_scale, got lr=None")
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        scale = 1.0 if lr_scale is None else float(lr_scale(name))
        if not scale > 0:
            raise ValueError(f"lr_scale({name!r}): expected a multiplier > 0, got {scale}")
        decay = p.ndim >= 2 and "embed" not in name
        groups.setdefault((decay, scale), []).append(p)
    scales = sorted({scale for _, scale in groups}) or [1.0]
    out = []
    for scale in scales:
        for decay in (True, False):
            group = {"params": groups.get((decay, scale), []), "weight_decay": weight_decay if decay else 0.0}
            if lr_scale is not None:
                group["lr"] = lr * scale
            out.append(group)
    return out


def build_optimizer(
    module: nn.Module, config: OptimConfig, lr_scale: Callable[[str], float] | None = None
) -> torch.optim.Optimizer:
    """AdamW over `module`'s trainable parameters; `lr_scale` as in `param_groups`."""
    groups = param_groups(module, config.weight_decay, lr_scale, config.lr)
    if not any(g["params"] for g in groups):
        raise ValueError(
            f"{type(module).__name__}: expected trainable parameters, found none (is everything frozen?)"
        )
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas))


def warmup_cosine(step: int, *, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """LR multiplier at `step`: linear 0 -> 1 over warm-up, then cosine 1 -> min_lr_ratio at max_steps."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if max_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (max_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, max_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    total = config.max_steps or max_steps
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: warmup_cosine(
            step, warmup_steps=config.warmup_steps, max_steps=total, min_lr_ratio=config.min_lr_ratio
        ),
    )


class ParameterEMA(nn.Module):
    """Exponential moving average of a module's trainable parameters (frozen ones are not copied).

    The shadow weights are buffers, so they are saved in Lightning checkpoints and restored on
    resume. `swapped()` puts the averages into the module for evaluation and restores the live
    weights afterwards.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        super().__init__()
        if not 0 < decay < 1:
            raise ValueError(f"decay: expected a value in (0, 1), got {decay}")
        self.decay = decay
        self._names = [n for n, p in module.named_parameters() if p.requires_grad]
        for i, n in enumerate(self._names):
            self.register_buffer(f"shadow_{i}", module.get_parameter(n).detach().clone())
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def _pairs(self, module: nn.Module) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i, n in enumerate(self._names):
            yield getattr(self, f"shadow_{i}"), module.get_parameter(n)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.num_updates += 1
        # Warm-up of the decay (as in timm's ModelEmaV3): early averages are not dominated by the init.
        n = float(self.num_updates)
        decay = min(self.decay, (1.0 + n) / (10.0 + n))
        for shadow, param in self._pairs(module):
            shadow.lerp_(param.detach(), 1.0 - decay)

    @contextlib.contextmanager
    def swapped(self, module: nn.Module) -> Iterator[None]:
        live = [p.detach().clone() for _, p in self._pairs(module)]
        with torch.no_grad():
            for shadow, param in self._pairs(module):
                param.copy_(shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                for saved, (_, param) in zip(live, self._pairs(module)):
                    param.copy_(saved)


def lightning_optimizers(
    module, config: OptimConfig, trainer, lr_scale: Callable[[str], float] | None = None
) -> dict:
    """What a stage's `configure_optimizers` returns: AdamW over `module`'s trainable parameters and
    the warm-up + cosine schedule over the trainer's total steps, stepped every step (the schedule
    multiplies every group's own learning rate, so `lr_scale`'s ratios hold throughout)."""
    optimizer = build_optimizer(module, config, lr_scale)
    total = int(trainer.estimated_stepping_batches) if trainer is not None else 1
    scheduler = build_scheduler(optimizer, config, max(1, total))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
