"""The action expert (AE, paper sections 3.1 and 3.3): a transformer trained from scratch that reads
the UE's per-layer keys/values and produces decisions, planning latents and a plan.

Axes: B batch, S UE tokens, L action tokens, K decision horizons (3), Q planning queries (6 + 20),
N BEV tokens, D AE width, D_ue UE width.

Action-token layout (the AE part of the hybrid mask; see `mot.mask`):

    [ rgb (gh*gw) | bev (N) | state (1-2) ]  [ decision (K) ]  [ route (20) | waypoints (6) ]
      task "observation"                       task "decision"  task "planning"

after the UE's tokens (task "understanding"). The planning order is `ActionExpertConfig.plan_order`
(route first, as in the public AutoMoT code, or waypoints first); with `cross_modal_causal` every
segment is its own causal block, otherwise the segments of a task see each other. Rotary positions continue from the UE's
`position_offset`. The AE has the UE's depth and KV-head layout, and its own width, norms, MLPs and
q/k/v projections (GQA).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from automot import spec
from automot.types import SensorBatch
from heads import ActionContext, ContextDims, Plan, PlanningHead, build_head
from mot.cache import UECache
from mot.config import MoTConfig, UEGeometry
from mot.decision import DecisionHead
from mot.encoders import BEVTokens, ImageTokens, StateTokens
from mot.layers import ActionExpertLayer, rope_cos_sin, rope_inv_freq
from mot.mask import Segment, hybrid_mask, segment_slices

# Action-token groups `ActionExpert.attention_mask` can keep out of attention: the segments, and "ego"
# (the ego-state token inside "state").
HIDEABLE_TOKENS = ("rgb", "bev", "state", "ego", "decision", "route", "waypoints")


@dataclass
class MoTOutput:
    """What one AE pass returns.

    lateral_logits:      (B, K, 5) or None in the "longitudinal3" decision set.
    longitudinal_logits: (B, K, n_lon).
    context:             the `ActionContext` handed to the planning head.
    plan:                the head's `Plan` (waypoints (B, 6, 2), route (B, 20, 2), ...), or None when
                         the pass was asked for the context only (training computes the head's loss
                         from the context instead of sampling a plan).
    latents:             (B, L, D) the AE's final hidden states over all action tokens.
    reasoning:           the UE's generated chain-of-thought per sample (from the cache this pass
                         attended to), or None when the cache holds no reasoning.
    """

    lateral_logits: torch.Tensor | None
    longitudinal_logits: torch.Tensor
    context: ActionContext
    plan: Plan | None
    latents: torch.Tensor
    reasoning: tuple[str, ...] | None = None


class ActionExpert(nn.Module):
    def __init__(self, config: MoTConfig, geometry: UEGeometry) -> None:
        super().__init__()
        self.config, self.geometry = config, geometry
        # Per-sample sensor shapes (`SensorBatch.shapes()`) the AE was trained with; recorded by the
        # training stages, saved in the policy folder, checked on every batch. None: not trained yet.
        self.input_shapes: dict[str, list[int]] | None = None
        # Sensor settings the AE was trained with beyond the shapes: what its BEV showed, e.g.
        # {"turn_signals": True, "vehicle_trail_s": 0.5} (blinkers, motion trails;
        # `driving.config.BEV_OPTIONS`); set from the training data, saved with the policy.
        self.sensor_options: dict[str, bool | float] | None = None
        c, g = config.ae, geometry
        d = c.hidden_size
        self.num_heads = c.num_heads(g)
        self.image_tokens = ImageTokens(c.image_encoder, c.image_grid, d, c.init_std)
        self.bev_tokens = BEVTokens(len(spec.BEV_CHANNELS), c.bev_channels, c.bev_grid, d, c.init_std)
        self.state_tokens = StateTokens(d, c.use_ego_token, c.target_scale_m)
        num_decisions = len(spec.DECISION_HORIZONS_S)
        self.decision_queries = nn.Parameter(torch.randn(num_decisions, d) * c.init_std)
        self.plan_queries = nn.Parameter(
            torch.randn(spec.NUM_WAYPOINTS + spec.NUM_ROUTE_POINTS, d) * c.init_std
        )
        self.layers = nn.ModuleList(
            ActionExpertLayer(
                d, self.num_heads, g.num_kv_heads, g.head_dim, c.intermediate_size, c.rms_norm_eps
            )
            for _ in range(g.num_layers)
        )
        self.norm = nn.RMSNorm(d, eps=c.rms_norm_eps)
        lateral = config.lateral_actions
        self.decision_head = DecisionHead(
            d, None if lateral is None else len(lateral), len(config.longitudinal_actions)
        )
        self.context_dims = ContextDims(latent_dim=d, reasoning_dim=g.hidden_size)
        self.head: PlanningHead = build_head(config.head, self.context_dims, **config.head_kwargs)
        for layer in self.layers:
            for m in layer.modules():
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=c.init_std)

        plan = (
            Segment("waypoints", spec.NUM_WAYPOINTS, "planning"),
            Segment("route", spec.NUM_ROUTE_POINTS, "planning"),
        )
        self.segments = (
            Segment("rgb", self.image_tokens.num_tokens, "observation"),
            Segment("bev", self.bev_tokens.num_tokens, "observation"),
            Segment("state", self.state_tokens.num_tokens, "observation"),
            Segment("decision", num_decisions, "decision"),
            *(plan[::-1] if c.plan_order == "route_first" else plan),
        )
        self.slices = segment_slices(self.segments)
        # The AE rows of the full hybrid mask; one causal UE token stands in for the whole UE
        # sequence, whose columns every action token sees (padding is masked per sample).
        rows = hybrid_mask(
            (Segment("ue", 1, "understanding", causal=True), *self.segments),
            cross_modal_causal=c.cross_modal_causal,
            rows=slice(1, None),
        )
        if not bool(rows[:, 0].all()):
            raise AssertionError("hybrid mask: every action token must see the UE sequence")
        self.register_buffer("ae_mask", rows[:, 1:].clone(), persistent=False)
        self.register_buffer("inv_freq", rope_inv_freq(g.head_dim, g.rope_theta), persistent=False)

    @property
    def num_tokens(self) -> int:
        return sum(s.length for s in self.segments)

    def embed(self, batch: SensorBatch) -> torch.Tensor:
        """The action tokens before the transformer: SensorBatch -> (B, L, D) in segment order."""
        if not isinstance(batch, SensorBatch):
            raise ValueError(f"batch: expected a SensorBatch, got {type(batch).__name__}")
        # The boundary: shapes, dtypes, finite values, and the sensor sizes this AE was trained with.
        batch.validate().check_shapes(self.input_shapes)
        b = batch.batch_size
        dev = self.decision_queries.device
        # `plan_queries` is stored waypoints then route whatever the order in the sequence.
        waypoints, route = self.plan_queries[: spec.NUM_WAYPOINTS], self.plan_queries[spec.NUM_WAYPOINTS :]
        plan = (route, waypoints) if self.config.ae.plan_order == "route_first" else (waypoints, route)
        parts = (
            self.image_tokens(batch.rgb.to(dev)),
            self.bev_tokens(batch.bev.to(dev)),
            self.state_tokens(batch.target_point.to(dev), batch.ego_state.to(dev), batch.ego_history.to(dev)),
            self.decision_queries.expand(b, -1, -1),
            torch.cat(plan).expand(b, -1, -1),
        )
        return torch.cat(parts, dim=1)

    def positions(self, cache: UECache) -> torch.Tensor:
        """(B, L) long rotary positions of the action tokens, continuing after the UE sequence."""
        steps = torch.arange(self.num_tokens, device=cache.position_offset.device)
        return cache.position_offset[:, None] + steps

    def token_columns(self, name: str) -> slice:
        """The action-token positions of a segment name, or of "ego" (the ego-state token, the last
        token of the "state" segment when the AE has one)."""
        if name == "ego":
            if self.state_tokens.ego is None:
                raise ValueError(
                    'hidden: expected "ego" only for an AE with an ego token (use_ego_token), got none'
                )
            stop = self.slices["state"].stop
            return slice(stop - 1, stop)
        if name not in self.slices:
            raise ValueError(
                f"hidden: expected a segment name in {sorted(self.slices)} or 'ego', got {name!r}"
            )
        return self.slices[name]

    def attention_mask(self, cache: UECache, hidden: tuple[str, ...] = ()) -> torch.Tensor:
        """(B, 1, L, S + L) bool: UE columns where the UE token is real, then the hybrid AE block.
        `hidden` token groups (`token_columns`) are columns no token attends to: the rest of the AE
        computes as if they were absent (their own rows still see the UE, so no row is empty)."""
        b, s, n = cache.batch_size, cache.seq_len, self.num_tokens
        ue = cache.mask.to(self.ae_mask.device)[:, None, None, :].expand(b, 1, n, s)
        ae = self.ae_mask
        if hidden:
            ae = ae.clone()
            for name in hidden:
                ae[:, self.token_columns(name)] = False
        return torch.cat((ue, ae[None, None].expand(b, 1, n, n)), dim=-1)

    def latents(self, tokens: torch.Tensor, cache: UECache, hidden: tuple[str, ...] = ()) -> torch.Tensor:
        """tokens (B, L, D) + cache (L_layers x (B, Hkv, S, d)) -> final normed hidden states (B, L, D);
        `hidden`: token groups no token attends to (`attention_mask`)."""
        cache.validate(self.geometry, check_values=False)  # values were checked where the cache was made
        if cache.batch_size != tokens.shape[0]:
            raise ValueError(
                f"UECache: expected batch size {tokens.shape[0]} (the action batch), got {cache.batch_size}"
            )
        dev = tokens.device
        if cache.mask.device != dev:
            cache = cache.to(dev)
        cos, sin = rope_cos_sin(self.positions(cache), self.inv_freq)
        mask = self.attention_mask(cache, hidden)
        x = tokens
        for layer, k, v in zip(self.layers, cache.keys, cache.values):
            x = layer(x, k, v, cos, sin, mask)
        return self.norm(x)

    def forward(
        self,
        batch: SensorBatch,
        cache: UECache,
        *,
        generator: torch.Generator | None = None,
        with_plan: bool = True,
        hidden: tuple[str, ...] = (),
    ) -> MoTOutput:
        """batch (B, ...) + UE cache -> MoTOutput (decision logits, ActionContext, Plan, latents).
        `hidden`: action-token groups kept out of attention (e.g. ("ego",) in latent-action
        pretraining without the ego token; `attention_mask`). Default: none, the AE as trained."""
        tokens = self.embed(batch)
        h = self.latents(tokens, cache, tuple(hidden))
        sl = self.slices
        decision = h[:, sl["decision"]]
        plan_latents = torch.cat((h[:, sl["waypoints"]], h[:, sl["route"]]), dim=1)
        bev = tokens[:, sl["bev"]] if self.config.ae.bev_context == "encoder" else h[:, sl["bev"]]
        lateral, longitudinal = self.decision_head(decision)
        dev = h.device
        # Reasoning tokens for the head: the generated chain-of-thought when the cache has one,
        # otherwise the prompt's hidden states (system prompt, images, instruction).
        reasoning_mask = cache.mask if cache.reasoning_mask is None else cache.reasoning_mask
        ctx = ActionContext(
            plan_latents=plan_latents,
            decision_latents=decision,
            bev_tokens=bev,
            ego_state=batch.ego_state.to(dev, h.dtype),
            ego_history=batch.ego_history.to(dev, h.dtype),
            reasoning_tokens=cache.hidden.to(dev, h.dtype),
            reasoning_mask=reasoning_mask.to(dev),
        ).validate(self.context_dims)  # what every head may rely on: right shapes, finite values
        plan = self.head(ctx, generator=generator) if with_plan else None
        return MoTOutput(
            lateral_logits=lateral,
            longitudinal_logits=longitudinal,
            context=ctx,
            plan=plan,
            latents=h,
            reasoning=cache.reasoning_text,
        )


def build_action_expert(
    config: MoTConfig, geometry: UEGeometry, *, seed: int = 0, device: torch.device | str = "cpu"
) -> ActionExpert:
    """An `ActionExpert` with weights drawn from `seed` (global RNG untouched); meta device allowed."""
    device = torch.device(device)
    if device.type == "meta":
        with torch.device("meta"):
            return ActionExpert(config, geometry)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ae = ActionExpert(config, geometry)
    return ae.to(device)
