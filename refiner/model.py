"""The refiner network: a DiT decoder over trajectory queries with Mixture-of-Attention fusion
(paper appendix A.3). It maps noisy normalised trajectories x_t and a timestep t to a prediction of
the clean trajectories x0, given context the action expert produced.

Data flow (shapes):
    context (once per sample)   bev (B, N, D_ae) -> bev_in -> (B, N, D)
                                decisions (B, K, D_ae) -> decision_in + horizon embedding -> (B, K, D)
                                reasoning (B, S, D_ue), ego state (B, D_s), history (B, H, D_h)
                                -> RefinerMemory: per-block MoAMemory, ego conditioning (B, D), plan latents
    each denoising step         x_t (B, Nw + Nr, 2), anchor (B, Q, 2), t (B,) -> queries (B, Q, D)
                                -> depth x DiTBlock(c = time(t) + ego) -> FinalLayer -> delta (B, Q, 2)
                                x0_hat = anchor + delta      (residual="prior", default)
                                x0_hat = x_t + delta         (residual="sample")

The anchor is the clean prior the sample was perturbed from (the AE's coarse plan, or one
candidate's starting plan). With residual="prior" the correction is relative to it, so a zero
correction returns the prior itself, not the perturbed sample: the zero-initialised final layer makes
an untrained refiner exactly "trust the prior", and the perturbation only decides where the network
looks, never leaks into the output. residual="sample" is the earlier design (the correction is
relative to the noisy sample; an untrained refiner returns the perturbed prior).

The network takes plain tensors (not a heads.ActionContext) so that `refiner` does not depend on `heads`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from automot.checks import check_choice, check_positive, check_tensor
from moa import MoAConfig, MoAMemory
from refiner.conditioning import ConditionEncoder
from refiner.dit import DiTBlock, FinalLayer
from refiner.queries import TrajectoryQueries


@dataclass
class RefinerConfig:
    dim: int = 256
    depth: int = 4
    mlp_ratio: float = 4.0
    num_freqs: int = 6
    use_plan_latents: bool = True
    state_scale: float = 10.0
    # What the predicted correction is added to: "prior" (the clean anchor) or "sample" (x_t).
    residual: str = "prior"
    # Embed the clean anchor next to the noisy sample in every trajectory query.
    condition_on_anchor: bool = True
    # A small head on the (detached) final features that scores its own output: predicted L1 to the
    # expert and a collision logit, used to choose among candidates.
    scorer: bool = True
    moa: MoAConfig = field(default_factory=MoAConfig)

    def __post_init__(self) -> None:
        for name in ("dim", "depth", "mlp_ratio", "num_freqs", "state_scale"):
            check_positive(f"RefinerConfig.{name}", getattr(self, name))
        check_choice("RefinerConfig.residual", self.residual, RESIDUALS)
        if self.dim % self.moa.num_heads:
            raise ValueError(
                f"RefinerConfig.dim: expected a multiple of moa.num_heads={self.moa.num_heads}, got {self.dim}"
            )


RESIDUALS = ("prior", "sample")


@dataclass
class RefinerMemory:
    """Per-sample context of the refiner, reused across denoising steps and candidate samples.

    anchor is the clean (normalised) plan the sample was perturbed from, (B, Q, 2); the denoiser sets
    it (`with_anchor`) before the reverse process, `encode` leaves it None.
    """

    blocks: list[MoAMemory]
    ego: torch.Tensor  # (B, D)
    plan_latents: torch.Tensor | None  # (B, Q, D_ae)
    anchor: torch.Tensor | None = None  # (B, Q, 2)

    def repeat_interleave(self, k: int) -> RefinerMemory:
        def rep(x):
            return None if x is None else x.repeat_interleave(k, dim=0)

        return RefinerMemory(
            blocks=[m.repeat_interleave(k) for m in self.blocks],
            ego=rep(self.ego),
            plan_latents=rep(self.plan_latents),
            anchor=rep(self.anchor),
        )

    def with_anchor(self, anchor: torch.Tensor) -> RefinerMemory:
        return dataclasses.replace(self, anchor=anchor)


class TrajectoryRefiner(nn.Module):
    def __init__(
        self,
        config: RefinerConfig,
        *,
        latent_dim: int,
        reasoning_dim: int,
        ego_state_dim: int,
        history_len: int,
        history_dim: int,
        num_waypoints: int,
        num_route: int,
        num_decisions: int,
    ) -> None:
        super().__init__()
        self.config = c = config
        self.segments = (num_waypoints, num_route)
        self.latent_dim, self.num_decisions = latent_dim, num_decisions
        self.cond = ConditionEncoder(
            c.dim, ego_state_dim, history_len, history_dim, state_scale=c.state_scale
        )
        self.queries = TrajectoryQueries(
            c.dim,
            num_waypoints,
            num_route,
            num_freqs=c.num_freqs,
            latent_dim=latent_dim if c.use_plan_latents else 0,
            with_anchor=c.condition_on_anchor,
        )
        self.bev_in = nn.Sequential(nn.LayerNorm(latent_dim), nn.Linear(latent_dim, c.dim))
        if c.moa.decision_source:
            self.decision_in = nn.Sequential(nn.LayerNorm(latent_dim), nn.Linear(latent_dim, c.dim))
            self.horizon_embed = nn.Parameter(torch.randn(1, num_decisions, c.dim) * 0.02)
        else:
            self.decision_in, self.horizon_embed = None, None
        self.blocks = nn.ModuleList(
            [DiTBlock(c.dim, c.mlp_ratio, c.moa, reasoning_dim) for _ in range(c.depth)]
        )
        self.final = FinalLayer(c.dim, 2)
        self.score_head = (
            nn.Sequential(nn.LayerNorm(c.dim), nn.Linear(c.dim, c.dim), nn.SiLU(), nn.Linear(c.dim, 2))
            if c.scorer
            else None
        )

    def encode(
        self,
        *,
        bev_tokens: torch.Tensor,
        decision_latents: torch.Tensor,
        ego_state: torch.Tensor,
        ego_history: torch.Tensor,
        plan_latents: torch.Tensor | None = None,
        bev_mask: torch.Tensor | None = None,
        reasoning_tokens: torch.Tensor | None = None,
        reasoning_mask: torch.Tensor | None = None,
    ) -> RefinerMemory:
        """Context tensors (shapes in the module docstring) -> RefinerMemory, computed once per sample."""
        bev = self.bev_in(bev_tokens)
        decisions = None
        if self.decision_in is not None:
            check_tensor("decision_latents", decision_latents, (None, self.num_decisions, self.latent_dim))
            decisions = self.decision_in(decision_latents) + self.horizon_embed
        blocks = [
            blk.attn.precompute(bev, bev_mask, decisions, reasoning_tokens, reasoning_mask)
            for blk in self.blocks
        ]
        return RefinerMemory(
            blocks=blocks,
            ego=self.cond.ego(ego_state, ego_history),
            plan_latents=plan_latents if self.config.use_plan_latents else None,
        )

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, memory: RefinerMemory) -> torch.Tensor:
        """x_t (B, Nw + Nr, 2) normalised noisy trajectories, t (B,) long -> x0_hat (B, Nw + Nr, 2)."""
        return self.forward_with_score(x_t, t, memory)[0]

    def forward_with_score(
        self, x_t: torch.Tensor, t: torch.Tensor, memory: RefinerMemory
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x_t, t, memory -> (x0_hat (B, Q, 2), score (B, 2) or None without a scorer).

        score[:, 0] predicts the (normalised) L1 of this x0_hat to the expert, score[:, 1] the logit of
        an open-loop collision of its waypoints. The scorer reads detached features: it learns to judge
        the refiner's output without changing it."""
        c = self.config
        anchor = memory.anchor
        if anchor is None and (c.residual == "prior" or c.condition_on_anchor):
            raise ValueError(
                "memory.anchor: expected the clean prior (B, Nw + Nr, 2) for a refiner with residual='prior' "
                "or condition_on_anchor=True, got None (set it with memory.with_anchor(x0))"
            )
        cond = self.cond.time(t) + memory.ego
        h = self.queries(x_t, memory.plan_latents, anchor if c.condition_on_anchor else None)
        for block, block_memory in zip(self.blocks, memory.blocks):
            h = block(h, cond, block_memory)
        base = anchor if c.residual == "prior" else x_t
        x0_hat = base + self.final(h, cond)
        score = None if self.score_head is None else self.score_head(h.detach().mean(dim=1))
        return x0_hat, score
