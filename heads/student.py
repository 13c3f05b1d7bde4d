"""The transformer-decoder head: the planner of the distilled student (LatentVLA section on
distillation; TransFuser / iPad-style query decoding), usable on any `ActionContext`.

Axes: B batch, K decision queries (3), Q planning queries (6 + 20), N BEV tokens, S reasoning tokens,
D head width, D_ae context width, D_r reasoning width.

    queries  = Linear([decision_latents ; plan_latents]) + query position       (B, K + Q, D)
    memory   = [Linear(bev_tokens) ; MLP(ego state, history) ; LN+Linear(reasoning_tokens)]   (B, N + 1 + S, D)
    depth x  queries += SelfAttn; queries += CrossAttn(queries, memory); queries += MLP
    plan     = MLPHead over the decoded planning queries (waypoints direct, route as cumulative steps)

On the action expert the reasoning tokens are the UE's hidden states (the VLM embeddings as keys and
values of a BEV cross-attention, as LatentVLA fuses them); in the student they are the teacher's
embeddings while training and the student's own prediction of them at inference (`latent.student`).
`decode` also returns the decoded decision queries, from which the student reads its meta-actions
and latent actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from automot.checks import check_positive
from automot.config import build_config
from heads.base import PlanningHead, register_head
from heads.blocks import TransformerBlock
from heads.mlp import MLPHead, MLPHeadConfig
from heads.types import ActionContext, ContextDims, Plan, PlanTarget


@dataclass
class StudentHeadConfig:
    dim: int = 128
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 2.0
    use_reasoning: bool = True  # cross-attend to the context's reasoning tokens when it has them
    ego_scale: float = 10.0  # speeds (m/s) and history positions (m) are tens of units
    plan: MLPHeadConfig = field(default_factory=MLPHeadConfig)

    def __post_init__(self) -> None:
        for name in ("dim", "depth", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"StudentHeadConfig.{name}: expected an int >= 1, got {value!r}")
        if self.dim % self.num_heads:
            raise ValueError(
                f"StudentHeadConfig.dim: expected a multiple of num_heads={self.num_heads}, got {self.dim}"
            )
        check_positive("StudentHeadConfig.mlp_ratio", self.mlp_ratio)
        check_positive("StudentHeadConfig.ego_scale", self.ego_scale)


@dataclass
class Decoded:
    """decision (B, K, D) and plan (B, Q, D) decoded queries; bev (B, N, D) projected BEV tokens."""

    decision: torch.Tensor
    plan: torch.Tensor
    bev: torch.Tensor


@register_head("student")
class StudentHead(PlanningHead):
    def __init__(
        self, dims: ContextDims, config: StudentHeadConfig | dict | None = None, **overrides
    ) -> None:
        super().__init__()
        self.dims = dims
        self.config = c = build_config(StudentHeadConfig, config, **overrides)
        n_queries = dims.num_decisions + dims.num_queries
        self.query_in = nn.Linear(dims.latent_dim, c.dim)
        self.query_pos = nn.Parameter(torch.randn(n_queries, c.dim) * 0.02)
        self.bev_in = nn.Linear(dims.latent_dim, c.dim)
        ego_in = dims.ego_state_dim + dims.history_len * dims.history_dim
        self.ego_in = nn.Sequential(nn.Linear(ego_in, c.dim), nn.GELU(), nn.Linear(c.dim, c.dim))
        use_r = c.use_reasoning and dims.reasoning_dim > 0
        self.reasoning_in = (
            nn.Sequential(nn.LayerNorm(dims.reasoning_dim), nn.Linear(dims.reasoning_dim, c.dim))
            if use_r
            else None
        )
        self.blocks = nn.ModuleList(
            TransformerBlock(c.dim, c.num_heads, cross=True, mlp_ratio=c.mlp_ratio) for _ in range(c.depth)
        )
        self.norm = nn.LayerNorm(c.dim)
        self.inner_dims = ContextDims(
            latent_dim=c.dim,
            ego_state_dim=dims.ego_state_dim,
            history_len=dims.history_len,
            history_dim=dims.history_dim,
            num_waypoints=dims.num_waypoints,
            num_route=dims.num_route,
            num_decisions=dims.num_decisions,
        )
        self.plan_head = MLPHead(self.inner_dims, c.plan)

    def decode(self, ctx: ActionContext) -> Decoded:
        """ctx -> the decoded decision and planning queries (see the module docstring)."""
        ctx.validate(self.dims)
        b = ctx.batch_size
        queries = self.query_in(torch.cat((ctx.decision_latents, ctx.plan_latents), dim=1)) + self.query_pos
        bev = self.bev_in(ctx.bev_tokens)
        ego = self.ego_in(
            torch.cat((ctx.ego_state, ctx.ego_history.flatten(1)), dim=-1) / self.config.ego_scale
        )
        parts = [bev, ego[:, None]]
        ones = torch.ones(b, 1, dtype=torch.bool, device=bev.device)
        masks = [ctx.bev_mask if ctx.bev_mask is not None else ones.expand(b, bev.shape[1]), ones]
        if self.reasoning_in is not None and ctx.reasoning_tokens is not None:
            parts.append(self.reasoning_in(ctx.reasoning_tokens))
            r_mask = ctx.reasoning_mask
            masks.append(r_mask if r_mask is not None else ones.expand(b, ctx.reasoning_tokens.shape[1]))
        memory, mask = torch.cat(parts, dim=1), torch.cat(masks, dim=1)
        for block in self.blocks:
            queries = block(queries, memory, mask)
        queries = self.norm(queries)
        k = self.dims.num_decisions
        return Decoded(decision=queries[:, :k], plan=queries[:, k:], bev=bev)

    def inner_context(self, ctx: ActionContext, decoded: Decoded) -> ActionContext:
        return ActionContext(
            plan_latents=decoded.plan,
            decision_latents=decoded.decision,
            bev_tokens=decoded.bev,
            ego_state=ctx.ego_state,
            ego_history=ctx.ego_history,
            bev_mask=ctx.bev_mask,
        )

    def plan_from(self, ctx: ActionContext, decoded: Decoded) -> Plan:
        """The plan of already decoded queries: waypoints (B, 6, 2), route (B, 20, 2)."""
        return self.plan_head(self.inner_context(ctx, decoded))

    def forward(self, ctx: ActionContext, *, generator: torch.Generator | None = None) -> Plan:
        """ctx -> Plan(waypoints (B, 6, 2), route (B, 20, 2)); deterministic (the generator is unused)."""
        return self.plan_from(ctx, self.decode(ctx))

    def loss(
        self,
        ctx: ActionContext,
        target: PlanTarget,
        *,
        generator: torch.Generator | None = None,
        sample_weight: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        return self.plan_head.loss(
            self.inner_context(ctx, self.decode(ctx)), target, sample_weight=sample_weight
        )
