"""Meta-action decisions (paper section 3.2, eq. 1): token-wise prediction, one token per horizon.

Axes: B batch, K decision horizons (1 s, 2 s, 3 s), D AE width.

Each decision query's final latent is decoded independently (not autoregressively) into a lateral
and a longitudinal distribution. In the CARLA set ("longitudinal3") there is no lateral output.
`decision_nll` is the pure loss function the training stage calls; accuracy is
`training.metrics.DecisionAccuracy`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from automot.checks import check_tensor

IGNORE_INDEX = -100


class DecisionHead(nn.Module):
    def __init__(self, dim: int, num_lateral: int | None, num_longitudinal: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.lateral = None if num_lateral is None else nn.Linear(dim, num_lateral)
        self.longitudinal = nn.Linear(dim, num_longitudinal)

    def forward(self, latents: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """latents (B, K, D) -> lateral logits (B, K, 5) or None, longitudinal logits (B, K, n_lon)."""
        x = self.norm(latents)
        lateral = None if self.lateral is None else self.lateral(x)
        return lateral, self.longitudinal(x)


def decision_nll(
    lateral_logits: torch.Tensor | None,
    longitudinal_logits: torch.Tensor,
    lateral_target: torch.Tensor | None,
    longitudinal_target: torch.Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, torch.Tensor]:
    """Token-wise negative log-likelihood of the target decisions (eq. 1).

    lateral_logits (B, K, n_lat) or None, longitudinal_logits (B, K, n_lon), targets (B, K) long
    with `ignore_index` for unlabelled entries. Returns "loss" (mean NLL over every labelled token
    of both kinds), "lateral_nll", "longitudinal_nll" (means over their labelled tokens) and
    "nll_per_horizon" (K,) (mean over both kinds at each horizon). A kind with no labelled token
    contributes 0.
    """
    dims: dict[str, int] = {}
    check_tensor("longitudinal_logits", longitudinal_logits, ("B", "K", None), dims=dims)
    check_tensor("longitudinal_target", longitudinal_target, ("B", "K"), dims=dims, dtype=torch.long)
    pieces = [_token_nll("longitudinal", longitudinal_logits, longitudinal_target, ignore_index)]
    out: dict[str, torch.Tensor] = {}
    if (lateral_logits is None) != (lateral_target is None):
        raise ValueError(
            "lateral_target: expected a target exactly when lateral logits exist (None in the longitudinal3 set), "
            f"got logits {'None' if lateral_logits is None else 'a tensor'} and target "
            f"{'None' if lateral_target is None else 'a tensor'}"
        )
    if lateral_logits is not None:
        check_tensor("lateral_logits", lateral_logits, ("B", "K", None), dims=dims)
        check_tensor("lateral_target", lateral_target, ("B", "K"), dims=dims, dtype=torch.long)
        pieces.append(_token_nll("lateral", lateral_logits, lateral_target, ignore_index))
    nll = torch.stack([p[0] for p in pieces])  # (kinds, B, K), zero where ignored
    valid = torch.stack([p[1] for p in pieces]).to(nll.dtype)
    out["loss"] = nll.sum() / valid.sum().clamp(min=1)
    out["longitudinal_nll"] = nll[0].sum() / valid[0].sum().clamp(min=1)
    if lateral_logits is not None:
        out["lateral_nll"] = nll[1].sum() / valid[1].sum().clamp(min=1)
    out["nll_per_horizon"] = nll.sum(dim=(0, 1)) / valid.sum(dim=(0, 1)).clamp(min=1)
    return out


def _token_nll(name: str, logits: torch.Tensor, target: torch.Tensor, ignore_index: int):
    n = logits.shape[-1]
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= n))
    if bool(bad.any()):
        raise ValueError(
            f"{name}_target: expected class ids in [0, {n}) or {ignore_index}, got {sorted(set(target[bad].tolist()))}"
        )
    nll = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=ignore_index, reduction="none")
    return nll.view_as(target), valid
