"""What the action expert hands to a planning head, and what a head hands back.

Axes: B batch, Q planning queries (Nw waypoint + Nr route), K decision horizons, N BEV tokens,
S reasoning tokens, H history steps, K' candidate samples, D_ae action-expert width, D_ue
understanding-expert width.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from automot import spec
from automot.checks import check_mask, check_tensor


@dataclass(frozen=True)
class ContextDims:
    """The sizes of an `ActionContext` a head is built for (every head factory takes one).

    reasoning_dim is the understanding expert's width, or 0 when no reasoning tokens are given.
    """

    latent_dim: int
    reasoning_dim: int = 0
    ego_state_dim: int = spec.EGO_STATE_DIM
    history_len: int = spec.HISTORY_LEN
    history_dim: int = spec.HISTORY_DIM
    num_waypoints: int = spec.NUM_WAYPOINTS
    num_route: int = spec.NUM_ROUTE_POINTS
    num_decisions: int = len(spec.DECISION_HORIZONS_S)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or value < (0 if f.name == "reasoning_dim" else 1):
                low = ">= 0" if f.name == "reasoning_dim" else ">= 1"
                raise ValueError(f"ContextDims.{f.name}: expected an int {low}, got {value!r}")

    @property
    def num_queries(self) -> int:
        return self.num_waypoints + self.num_route


@dataclass
class ActionContext:
    """Everything a planning head may condition on.

    plan_latents:      (B, Nw + Nr, D_ae) final AE latents of the planning queries, waypoints first.
    decision_latents:  (B, K, D_ae) final AE latents of the decision queries (one per horizon).
    bev_tokens:        (B, N, D_ae) BEV feature tokens.
    ego_state:         (B, D_s) current ego state (see `automot.spec.EGO_STATE_FIELDS`).
    ego_history:       (B, H, D_h) low-dimensional ego history, oldest first.
    bev_mask:          (B, N) bool, True = valid token; None means all valid.
    reasoning_tokens:  (B, S, D_ue) the understanding expert's final hidden states, or None.
    reasoning_mask:    (B, S) bool, True = valid token; None means all valid.
    """

    plan_latents: torch.Tensor
    decision_latents: torch.Tensor
    bev_tokens: torch.Tensor
    ego_state: torch.Tensor
    ego_history: torch.Tensor
    bev_mask: torch.Tensor | None = None
    reasoning_tokens: torch.Tensor | None = None
    reasoning_mask: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.plan_latents.shape[0]

    def validate(self, expected: ContextDims | None = None) -> ActionContext:
        """Check shapes agree (with `expected` when given) and values are finite; returns self.

        Raises `ValueError` naming the field, the expected and the received shape.
        """
        e = expected
        dims: dict[str, int] = {} if e is None else {"D_ae": e.latent_dim}
        q = None if e is None else e.num_queries
        k = None if e is None else e.num_decisions
        check_tensor("ActionContext.plan_latents", self.plan_latents, ("B", q, "D_ae"), dims=dims)
        check_tensor("ActionContext.decision_latents", self.decision_latents, ("B", k, "D_ae"), dims=dims)
        check_tensor("ActionContext.bev_tokens", self.bev_tokens, ("B", "N", "D_ae"), dims=dims)
        check_tensor(
            "ActionContext.ego_state",
            self.ego_state,
            ("B", None if e is None else e.ego_state_dim),
            dims=dims,
        )
        hist = (None, None) if e is None else (e.history_len, e.history_dim)
        check_tensor("ActionContext.ego_history", self.ego_history, ("B", *hist), dims=dims)
        if self.bev_mask is not None:
            check_mask("ActionContext.bev_mask", self.bev_mask, ("B", "N"), dims=dims)
        if e is not None and e.reasoning_dim > 0 and self.reasoning_tokens is None:
            raise ValueError(
                f"ActionContext.reasoning_tokens: expected a tensor (B, S, {e.reasoning_dim}) for a head built with "
                "reasoning_dim > 0, got None"
            )
        if self.reasoning_tokens is not None:
            width = None if e is None or e.reasoning_dim == 0 else e.reasoning_dim
            check_tensor(
                "ActionContext.reasoning_tokens", self.reasoning_tokens, ("B", "S", width), dims=dims
            )
            if self.reasoning_mask is not None:
                check_mask("ActionContext.reasoning_mask", self.reasoning_mask, ("B", "S"), dims=dims)
        elif self.reasoning_mask is not None:
            raise ValueError(
                "ActionContext.reasoning_mask: expected None when reasoning_tokens is None, got a tensor"
            )
        return self

    def detach(self) -> ActionContext:
        return replace(self, **{f.name: _detach(getattr(self, f.name)) for f in fields(self)})

    def repeat_interleave(self, k: int) -> ActionContext:
        """Each sample repeated k times along the batch: (B, ...) -> (B*k, ...), sample-major."""
        return replace(self, **{f.name: _rep(getattr(self, f.name), k) for f in fields(self)})


@dataclass
class PlanTarget:
    """Ground truth for a plan: waypoints (B, Nw, 2) and route (B, Nr, 2) in the ego frame, metres.

    Optionally the labelled future agents, for heads that learn to judge collisions:
    agent_boxes (B, Nw, A, 5) (x, y, heading, length, width at each waypoint time), agent_mask
    (B, Nw, A) bool, ego_size (B, 2) (length, width).
    """

    waypoints: torch.Tensor
    route: torch.Tensor
    agent_boxes: torch.Tensor | None = None
    agent_mask: torch.Tensor | None = None
    ego_size: torch.Tensor | None = None

    @property
    def has_agents(self) -> bool:
        return self.agent_boxes is not None

    def validate(self, *, num_waypoints: int, num_route: int, batch_size: int | None = None) -> PlanTarget:
        dims = {} if batch_size is None else {"B": batch_size}
        check_tensor("PlanTarget.waypoints", self.waypoints, ("B", num_waypoints, 2), dims=dims)
        check_tensor("PlanTarget.route", self.route, ("B", num_route, 2), dims=dims)
        agents = (self.agent_boxes, self.agent_mask, self.ego_size)
        if any(a is not None for a in agents) and any(a is None for a in agents):
            raise ValueError(
                "PlanTarget.agent_boxes/agent_mask/ego_size: expected all three or none, got "
                + ", ".join(
                    f"{n}={'set' if a is not None else 'None'}"
                    for n, a in zip(("agent_boxes", "agent_mask", "ego_size"), agents)
                )
            )
        if self.agent_boxes is not None:
            check_tensor("PlanTarget.agent_boxes", self.agent_boxes, ("B", num_waypoints, "A", 5), dims=dims)
            check_tensor(
                "PlanTarget.agent_mask",
                self.agent_mask,
                ("B", num_waypoints, "A"),
                dims=dims,
                dtype=torch.bool,
            )
            check_tensor("PlanTarget.ego_size", self.ego_size, ("B", 2), dims=dims)
        return self


@dataclass
class Plan:
    """A head's output.

    waypoints:          (B, Nw, 2) the chosen plan, ego frame, metres.
    route:              (B, Nr, 2).
    waypoint_samples:   (B, K', Nw, 2) candidate plans of a sampling head, or None.
    route_samples:      (B, K', Nr, 2) or None.
    prior_waypoints:    (B, Nw, 2) the coarse proposal a refining head started from, or None.
    prior_route:        (B, Nr, 2) or None.
    sample_scores:      (B, K', 2) a scoring head's (predicted L1 to the expert, collision logit) per
                        candidate, or None.
    """

    waypoints: torch.Tensor
    route: torch.Tensor
    waypoint_samples: torch.Tensor | None = None
    route_samples: torch.Tensor | None = None
    prior_waypoints: torch.Tensor | None = None
    prior_route: torch.Tensor | None = None
    sample_scores: torch.Tensor | None = None

    def detach(self) -> Plan:
        return replace(self, **{f.name: _detach(getattr(self, f.name)) for f in fields(self)})


def _detach(x):
    return x.detach() if isinstance(x, torch.Tensor) else x


def _rep(x, k: int):
    return x.repeat_interleave(k, dim=0) if isinstance(x, torch.Tensor) else x
