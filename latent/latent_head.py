"""Latent-action prediction: from one latent per horizon to a distribution over the LAM's codes.

Axes: B batch, K horizons (the AE's decision queries at 1 / 2 / 3 s), D width, M latent tokens per
transition, V codebook entries.

The action expert is pretrained to predict, from the current observation only, the latent actions
the LAM assigns to the next K transitions (o_t -> o_{t+1s} -> o_{t+2s} -> o_{t+3s}), one decision
query per transition (LatentVLA: a VLM predicting latent-action sequences). `latent_action_nll` is
the token-wise cross-entropy, with `IGNORE_INDEX` where a future does not exist.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from automot.checks import check_tensor
from automot.io import load_safetensors, load_state_dict_strict, save_safetensors_atomic, write_json_atomic

IGNORE_INDEX = -100
WEIGHTS = "latent_head.safetensors"
CONFIG = "latent_head.json"


@dataclass(frozen=True)
class LatentHeadConfig:
    in_dim: int
    num_tokens: int = 4
    codebook_size: int = 16

    def __post_init__(self) -> None:
        for name in ("in_dim", "num_tokens", "codebook_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"LatentHeadConfig.{name}: expected an int >= 1, got {value!r}")


class LatentActionHead(nn.Module):
    def __init__(self, config: LatentHeadConfig) -> None:
        super().__init__()
        self.config = c = config
        self.norm = nn.LayerNorm(c.in_dim)
        self.proj = nn.Linear(c.in_dim, c.num_tokens * c.codebook_size)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (B, K, D) -> logits (B, K, M, V)."""
        check_tensor("latents", latents, ("B", "K", self.config.in_dim))
        b, k, _ = latents.shape
        return self.proj(self.norm(latents)).view(b, k, self.config.num_tokens, self.config.codebook_size)


def latent_action_nll(logits: torch.Tensor, codes: torch.Tensor) -> dict[str, torch.Tensor]:
    """logits (B, K, M, V), codes (B, K, M) long (IGNORE_INDEX = no target) -> "loss" (mean NLL over
    the targets), "accuracy" (share of tokens whose arg-max is the code), "accuracy_per_horizon" (K,)."""
    dims: dict[str, int] = {}
    check_tensor("logits", logits, ("B", "K", "M", None), dims=dims)
    check_tensor("codes", codes, ("B", "K", "M"), dims=dims, dtype=torch.long)
    valid = codes != IGNORE_INDEX
    nll = F.cross_entropy(logits.flatten(0, 2), codes.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    hit = (logits.argmax(-1) == codes) & valid
    per_h = hit.sum(dim=(0, 2)).float() / valid.sum(dim=(0, 2)).clamp(min=1)
    return {
        "loss": nll / valid.sum().clamp(min=1),
        "accuracy": hit.sum().float() / valid.sum().clamp(min=1),
        "accuracy_per_horizon": per_h,
    }


def soft_latent_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) over the codebook per token, averaged: both logits (B, K, M, V)."""
    check_tensor("student_logits", student, tuple(teacher.shape))
    t = F.log_softmax(teacher / temperature, dim=-1)
    s = F.log_softmax(student / temperature, dim=-1)
    return (t.exp() * (t - s)).sum(-1).mean() * temperature**2


def save_latent_head(head: LatentActionHead, directory: str | os.PathLike) -> None:
    directory = Path(directory)
    save_safetensors_atomic(head.state_dict(), directory / WEIGHTS)
    write_json_atomic(directory / CONFIG, asdict(head.config))


def load_latent_head(directory: str | os.PathLike) -> LatentActionHead | None:
    """The folder's latent-action head, or None when it has none (a plain policy folder)."""
    directory = Path(directory)
    if not (directory / CONFIG).exists():
        return None
    head = LatentActionHead(LatentHeadConfig(**json.loads((directory / CONFIG).read_text())))
    load_state_dict_strict(head, load_safetensors(directory / WEIGHTS), source=str(directory / WEIGHTS))
    return head.eval()
