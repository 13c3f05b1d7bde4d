"""The diffusion head: the MLP head's coarse plan refined by truncated denoising (paper appendix A.3).

forward: prior = MLPHead(ctx); memory = refiner.encode(ctx); plan = denoiser.sample(prior, memory, g)
loss:    prior = MLPHead(ctx) (detached unless `differentiable_prior`); x0_hat = network(perturb(prior, t));
         L1(x0_hat, expert) with the MLP head's waypoint weights, plus `prior_loss_weight` x the prior's
         own L1 when the prior is trained, plus `score_loss_weight` x the score head's loss: smooth L1
         on the estimate's own (normalised) L1 to the expert and a BCE on whether its waypoints
         collide with the labelled future agents (when the target carries them).

`differentiable_prior=False` (default) freezes the prior: its parameters get requires_grad=False and
its output is detached. True is the paper's "differentiable" refiner: the refiner loss flows back
through the prior (and through the context into the action expert when that is trainable).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from automot.checks import check_positive
from automot.collision import plan_collisions
from automot.config import build_config
from heads.base import PlanningHead, register_head
from heads.losses import plan_l1_loss
from heads.mlp import MLPHead, MLPHeadConfig
from heads.types import ActionContext, ContextDims, Plan, PlanTarget
from refiner.denoiser import DenoiserConfig, TruncatedDenoiser
from refiner.model import RefinerConfig, RefinerMemory, TrajectoryRefiner


@dataclass
class DiffusionHeadConfig:
    prior: MLPHeadConfig = field(default_factory=MLPHeadConfig)
    refiner: RefinerConfig = field(default_factory=RefinerConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    differentiable_prior: bool = False
    prior_loss_weight: float = 0.0
    score_loss_weight: float = 0.1
    # Used when forward() gets no generator, so an un-seeded call is still reproducible.
    default_seed: int = 0

    def __post_init__(self) -> None:
        check_positive("DiffusionHeadConfig.prior_loss_weight", self.prior_loss_weight, allow_zero=True)
        check_positive("DiffusionHeadConfig.score_loss_weight", self.score_loss_weight, allow_zero=True)
        if self.denoiser.selection == "scorer" and not self.refiner.scorer:
            raise ValueError(
                "DiffusionHeadConfig.denoiser.selection: 'scorer' needs refiner.scorer=True, got refiner.scorer=False"
            )
        if self.prior_loss_weight > 0 and not self.differentiable_prior:
            raise ValueError(
                "DiffusionHeadConfig.prior_loss_weight: expected 0 when differentiable_prior=False (a frozen prior "
                f"cannot learn), got {self.prior_loss_weight}"
            )


@register_head("diffusion")
class DiffusionHead(PlanningHead):
    def __init__(
        self,
        dims: ContextDims,
        config: DiffusionHeadConfig | dict | None = None,
        *,
        prior_head: MLPHead | None = None,
        **overrides,
    ) -> None:
        super().__init__()
        self.dims = dims
        self.config = c = build_config(DiffusionHeadConfig, config, **overrides)
        if prior_head is not None and prior_head.dims != dims:
            raise ValueError(
                f"prior_head: expected an MLPHead built for {dims}, got one built for {prior_head.dims}"
            )
        self.prior = prior_head if prior_head is not None else MLPHead(dims, c.prior)
        self.prior.requires_grad_(c.differentiable_prior)
        network = TrajectoryRefiner(
            c.refiner,
            latent_dim=dims.latent_dim,
            reasoning_dim=dims.reasoning_dim,
            ego_state_dim=dims.ego_state_dim,
            history_len=dims.history_len,
            history_dim=dims.history_dim,
            num_waypoints=dims.num_waypoints,
            num_route=dims.num_route,
            num_decisions=dims.num_decisions,
        )
        self.denoiser = TruncatedDenoiser(network, c.denoiser)

    @classmethod
    def from_mlp_head(
        cls, mlp_head: MLPHead, config: DiffusionHeadConfig | dict | None = None, **overrides
    ) -> DiffusionHead:
        """Wrap an (already trained) MLP head: it becomes this head's prior, weights shared, not copied."""
        if not isinstance(mlp_head, MLPHead):
            raise ValueError(f"mlp_head: expected an MLPHead, got {type(mlp_head).__name__}")
        config = dataclasses.replace(
            build_config(DiffusionHeadConfig, config, **overrides), prior=mlp_head.config
        )
        return cls(mlp_head.dims, config, prior_head=mlp_head)

    supports_samples = True
    is_stochastic = True
    refines_prior = True

    @property
    def prior_head(self) -> MLPHead:
        return self.prior

    @property
    def trains_prior(self) -> bool:
        return self.config.differentiable_prior

    def _prior(self, ctx: ActionContext) -> Plan:
        plan = self.prior(ctx)
        return plan if self.config.differentiable_prior else plan.detach()

    def encode(self, ctx: ActionContext) -> RefinerMemory:
        return self.denoiser.network.encode(
            bev_tokens=ctx.bev_tokens,
            decision_latents=ctx.decision_latents,
            ego_state=ctx.ego_state,
            ego_history=ctx.ego_history,
            plan_latents=ctx.plan_latents,
            bev_mask=ctx.bev_mask,
            reasoning_tokens=ctx.reasoning_tokens if self.dims.reasoning_dim > 0 else None,
            reasoning_mask=ctx.reasoning_mask if self.dims.reasoning_dim > 0 else None,
        )

    def forward(
        self,
        ctx: ActionContext,
        *,
        generator: torch.Generator | None = None,
        num_samples: int | None = None,
        num_steps: int | None = None,
        t_start: int | None = None,
    ) -> Plan:
        """ctx -> Plan(waypoints (B, Nw, 2), route (B, Nr, 2), samples (B, K, ...), prior (B, ...))."""
        if generator is None:
            generator = torch.Generator(device=ctx.plan_latents.device).manual_seed(self.config.default_seed)
        prior = self.prior(ctx)
        out = self.denoiser.sample(
            prior.waypoints,
            prior.route,
            self.encode(ctx),
            generator,
            num_samples=num_samples,
            t_start=t_start,
            num_steps=num_steps,
        )
        return Plan(
            waypoints=out.waypoints,
            route=out.route,
            waypoint_samples=out.waypoint_samples,
            route_samples=out.route_samples,
            prior_waypoints=prior.waypoints,
            prior_route=prior.route,
            sample_scores=out.scores,
        )

    def loss(
        self,
        ctx: ActionContext,
        target: PlanTarget,
        *,
        generator: torch.Generator | None = None,
        sample_weight: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        target.validate(
            num_waypoints=self.dims.num_waypoints, num_route=self.dims.num_route, batch_size=ctx.batch_size
        )
        prior = self._prior(ctx)
        train = self.denoiser.training_prediction(
            prior.waypoints,
            prior.route,
            self.encode(ctx),
            generator,
            target_waypoints=target.waypoints,
            target_route=target.route,
        )
        weights, pc = self.prior.waypoint_weights, self.prior.config
        w = train.regression_weight if sample_weight is None else train.regression_weight * sample_weight
        parts = [
            plan_l1_loss(Plan(wp, route), target, weights, pc.waypoint_loss_weight, pc.route_loss_weight, w)
            for wp, route in train.estimates
        ]
        # Every network evaluation of the (possibly unrolled) chain counts equally.
        out = {k: torch.stack([p[k] for p in parts]).mean() for k in parts[0]}
        if train.score is not None and self.config.score_loss_weight > 0:
            score_parts = self._score_loss(train.score, *train.estimates[-1], target)
            out.update(score_parts)
            out["loss"] = out["loss"] + self.config.score_loss_weight * sum(score_parts.values())
        if self.config.prior_loss_weight > 0:
            prior_loss = plan_l1_loss(
                prior, target, weights, pc.waypoint_loss_weight, pc.route_loss_weight, sample_weight
            )["loss"]
            out["prior_loss"] = prior_loss
            out["loss"] = out["loss"] + self.config.prior_loss_weight * prior_loss
        return out

    def _score_loss(
        self, score: torch.Tensor, waypoints: torch.Tensor, route: torch.Tensor, target: PlanTarget
    ) -> dict[str, torch.Tensor]:
        """The score head learns to predict its estimate's own error (and collision) from detached features."""
        dn = self.denoiser
        with torch.no_grad():
            err = (
                (dn.normalize(waypoints, route) - dn.normalize(target.waypoints, target.route))
                .abs()
                .mean((-1, -2))
            )
        out = {"score_l1": torch.nn.functional.smooth_l1_loss(score[:, 0], err, beta=0.05)}
        if target.has_agents:
            with torch.no_grad():
                hit = plan_collisions(waypoints, target.agent_boxes, target.agent_mask, target.ego_size).any(
                    -1
                )
            out["score_collision"] = torch.nn.functional.binary_cross_entropy_with_logits(
                score[:, 1], hit.float()
            )
        return out
