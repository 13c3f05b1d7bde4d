"""Open-loop metrics as torchmetrics `Metric`s: thin state holders over `training.functional`.

States are sums with `dist_reduce_fx="sum"`, so the DDP-synced value equals the single-process
value over the union of the data.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from automot import spec
from automot.checks import check_choice
from training import functional as F

HORIZON_NAMES = tuple(f"{int(h)}s" for h in spec.DECISION_HORIZONS_S)


class _HorizonMean(Metric):
    """Sum-reduced per-horizon mean of a per-sample quantity (B, 3): the shared state of L2 and collision."""

    full_state_update = False
    prefix = ""

    def __init__(self, protocol: str = "stp3", **kwargs) -> None:
        super().__init__(**kwargs)
        check_choice("protocol", protocol, F.PROTOCOLS)
        self.protocol = protocol
        self.add_state(
            "total", default=torch.zeros(len(HORIZON_NAMES), dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def _accumulate(self, per_sample: torch.Tensor) -> None:
        self.total += per_sample.sum(dim=0).double()
        self.count += per_sample.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        mean = self.total / self.count.clamp_min(1)
        out = {f"{self.prefix}_{h}": mean[i] for i, h in enumerate(HORIZON_NAMES)}
        out[f"{self.prefix}_avg"] = mean.mean()
        return out


class PlanL2(_HorizonMean):
    """L2 at 1/2/3 s and their average, under the `stp3` or `uniad` protocol (see `training.functional`)."""

    higher_is_better = False
    prefix = "l2"

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target (B, Nw, 2) waypoints in metres."""
        self._accumulate(F.l2_per_horizon(pred.detach().float(), target.float(), self.protocol))


class CollisionRate(_HorizonMean):
    """Share of plans in collision at 1/2/3 s and the average, from per-waypoint collision flags."""

    higher_is_better = False
    prefix = "collision"

    def update(self, collided: torch.Tensor) -> None:
        """collided (B, Nw) bool: the plan's ego box overlaps an agent box at that waypoint's time."""
        self._accumulate(F.collision_per_horizon(collided, self.protocol))


class DecisionAccuracy(Metric):
    """Meta-action accuracy per horizon: longitudinal, and with lateral logits also lateral and joint."""

    higher_is_better = True
    full_state_update = False
    KINDS = ("lateral", "longitudinal", "joint")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        k = len(HORIZON_NAMES)
        for kind in self.KINDS:
            self.add_state(
                f"{kind}_correct", default=torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum"
            )
            self.add_state(
                f"{kind}_count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum"
            )

    def update(self, lateral_logits, longitudinal_logits, lateral_target, longitudinal_target) -> None:
        """logits (B, K, C) or None for lateral; targets (B, K) class indices."""
        correct = F.decision_correct(lateral_logits, longitudinal_logits, lateral_target, longitudinal_target)
        for kind, c in correct.items():
            getattr(self, f"{kind}_correct").add_(c.sum(dim=0).double())
            getattr(self, f"{kind}_count").add_(c.shape[0])

    def compute(self) -> dict[str, torch.Tensor]:
        out = {}
        for kind in self.KINDS:
            count = getattr(self, f"{kind}_count")
            if float(count) == 0:
                continue  # e.g. no lateral head in the 3-way longitudinal configuration
            acc = getattr(self, f"{kind}_correct") / count
            out.update({f"acc_{kind}_{h}": acc[i] for i, h in enumerate(HORIZON_NAMES)})
            out[f"acc_{kind}"] = acc.mean()
        return out
