"""Mixture-of-Attention (paper appendix A.3, fig. 4, eq. 8): main-bypass fusion for the refiner.

Main pathway: the trajectory queries attend jointly over three sources, each with its own key/value
projections: themselves (self-attention), the BEV tokens, and the action expert's decision latents.
The decision values are multiplied by a learnable lambda, so the decision source's contribution can
be turned up or down. Bypass: the mean-pooled BEV tokens and the attention-pooled reasoning tokens
(the understanding expert's hidden states), each projected and multiplied by a learnable gate,
scaled by a factor a(c) from the AdaLN conditioning and added to every query:

    h    = Attn(q, [k_self; k_bev; k_dec], [v_self; v_bev; lambda * v_dec])       (`forward`)
    b    = g_bev * P_bev(mean(BEV)) + g_reason * P_reason(attnpool(R))              (`precompute`)
    x   <- x + gate(c) * h + a(c) * b                                               (the DiT block)

The bypass enters the residual stream beside the main path, not under its gate: an earlier design
put it inside (x + gate(c) * (h + (1 + a(c)) * b)) with zero gates, so the bypass's gradient was the
product of two zero-initialised factors and the trained gates stayed below 0.01. Now a(c) starts at
zero (AdaLN-Zero: every block is the identity at initialisation) and the gates g start at
`gate_init` (1), so a(c) receives gradient from the first step and g as soon as a(c) moves.

Everything that depends only on the context (memory keys/values, bypass vectors) is computed once
per sample by `precompute` and reused for every denoising step and every candidate sample.

Axes: B batch, Q queries, N BEV tokens, K decision tokens, S reasoning tokens, h heads, d head dim.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from automot.checks import check_positive


@dataclass
class MoAConfig:
    """Switches of the Mixture-of-Attention; the defaults are the paper's design.

    bypass:          add the gated BEV / reasoning bypass (False: main pathway only).
    decision_source: attend to the AE decision latents (False: queries + BEV only).
    scale_decision:  multiply the decision values by a learnable lambda (False: fixed 1).
    joint:           one joint softmax over all sources (False: separate self/BEV/decision attentions, summed).
    """

    num_heads: int = 8
    bypass: bool = True
    decision_source: bool = True
    scale_decision: bool = True
    joint: bool = True
    lambda_init: float = 1.0
    gate_init: float = 1.0

    def __post_init__(self) -> None:
        check_positive("MoAConfig.num_heads", self.num_heads)


@dataclass
class MoAMemory:
    """Context-only tensors of one MoA block, computed once per sample.

    keys/values: per source name ("bev", "decision") a (B, h, M, d) tensor; decision values already
    carry lambda. key_mask: per source (B, M) bool or None. bypass: (B, D) or None.
    """

    keys: dict[str, torch.Tensor]
    values: dict[str, torch.Tensor]
    key_mask: dict[str, torch.Tensor | None]
    bypass: torch.Tensor | None

    def repeat_interleave(self, k: int) -> MoAMemory:
        def rep(x):
            if isinstance(x, dict):
                return {n: rep(v) for n, v in x.items()}
            return None if x is None else x.repeat_interleave(k, dim=0)

        return replace(self, **{f.name: rep(getattr(self, f.name)) for f in fields(self)})


class AttentionPool(nn.Module):
    """A learned query attends over tokens (B, S, D_in) -> (B, D_out), honouring a padding mask."""

    def __init__(self, in_dim: int, out_dim: int, num_heads: int) -> None:
        super().__init__()
        if out_dim % num_heads:
            raise ValueError(f"AttentionPool: out_dim={out_dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.query = nn.Parameter(torch.randn(1, 1, out_dim) * 0.02)
        self.norm = nn.LayerNorm(in_dim)
        self.kv = nn.Linear(in_dim, 2 * out_dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        k, v = self.kv(self.norm(tokens)).chunk(2, dim=-1)
        q = self.query.expand(tokens.shape[0], -1, -1)
        q, k, v = (rearrange(x, "b s (h d) -> b h s d", h=self.num_heads) for x in (q, k, v))
        attn_mask = None if mask is None else mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return rearrange(out, "b h 1 d -> b (h d)")


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, N, D), (B, N) bool -> (B, D): mean over valid tokens."""
    if mask is None:
        return tokens.mean(dim=1)
    w = mask.to(tokens.dtype)[..., None]
    return (tokens * w).sum(dim=1) / w.sum(dim=1)


class MixtureOfAttention(nn.Module):
    """Main-bypass fusion of trajectory queries with BEV, decision latents and reasoning tokens."""

    def __init__(self, dim: int, config: MoAConfig | None = None, *, reasoning_dim: int = 0) -> None:
        super().__init__()
        self.config = c = config if config is not None else MoAConfig()
        if dim % c.num_heads:
            raise ValueError(
                f"MixtureOfAttention: dim={dim} must be divisible by MoAConfig.num_heads={c.num_heads}"
            )
        self.dim, self.num_heads = dim, c.num_heads
        self.q = nn.Linear(dim, dim)
        self.kv_self = nn.Linear(dim, 2 * dim)
        self.kv_bev = nn.Linear(dim, 2 * dim)
        self.kv_decision = nn.Linear(dim, 2 * dim) if c.decision_source else None
        if c.decision_source and c.scale_decision:
            self.decision_lambda = nn.Parameter(torch.tensor(float(c.lambda_init)))
        else:
            self.register_parameter("decision_lambda", None)
        self.proj = nn.Linear(dim, dim)
        if c.bypass:
            self.bypass_bev = nn.Linear(dim, dim)
            self.gate_bev = nn.Parameter(torch.tensor(float(c.gate_init)))
            self.reasoning_pool = (
                AttentionPool(reasoning_dim, dim, c.num_heads) if reasoning_dim > 0 else None
            )
            self.bypass_reasoning = nn.Linear(dim, dim) if reasoning_dim > 0 else None
            self.gate_reasoning = (
                nn.Parameter(torch.tensor(float(c.gate_init))) if reasoning_dim > 0 else None
            )
        else:
            self.bypass_bev = self.gate_bev = self.reasoning_pool = self.bypass_reasoning = (
                self.gate_reasoning
            ) = None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b n (h d) -> b h n d", h=self.num_heads)

    def precompute(
        self,
        bev: torch.Tensor,
        bev_mask: torch.Tensor | None,
        decisions: torch.Tensor | None,
        reasoning: torch.Tensor | None,
        reasoning_mask: torch.Tensor | None,
    ) -> MoAMemory:
        """bev (B, N, D), decisions (B, K, D), reasoning (B, S, D_r) -> MoAMemory (see class doc)."""
        keys, values, key_mask = {}, {}, {}
        k, v = self.kv_bev(bev).chunk(2, dim=-1)
        keys["bev"], values["bev"], key_mask["bev"] = self._heads(k), self._heads(v), bev_mask
        if self.kv_decision is not None:
            if decisions is None:
                raise ValueError(
                    "decisions: expected (B, K, D) decision latents for an MoA with decision_source=True, got None"
                )
            k, v = self.kv_decision(decisions).chunk(2, dim=-1)
            if self.decision_lambda is not None:
                v = v * self.decision_lambda
            keys["decision"], values["decision"], key_mask["decision"] = self._heads(k), self._heads(v), None
        bypass = None
        if self.bypass_bev is not None:
            bypass = self.gate_bev * self.bypass_bev(masked_mean(bev, bev_mask))
            if self.reasoning_pool is not None:
                if reasoning is None:
                    raise ValueError(
                        "reasoning: expected (B, S, D_r) reasoning tokens for an MoA built with reasoning_dim > 0, got None"
                    )
                pooled = self.reasoning_pool(reasoning, reasoning_mask)
                bypass = bypass + self.gate_reasoning * self.bypass_reasoning(pooled)
        return MoAMemory(keys=keys, values=values, key_mask=key_mask, bypass=bypass)

    def forward(self, x: torch.Tensor, memory: MoAMemory) -> torch.Tensor:
        """x (B, Q, D), memory from `precompute` -> the main pathway's output h (B, Q, D).

        The bypass vector is `memory.bypass` (B, D); the DiT block adds it to the residual stream."""
        q = self._heads(self.q(x))
        k_self, v_self = (self._heads(t) for t in self.kv_self(x).chunk(2, dim=-1))
        sources = ["bev", *(["decision"] if "decision" in memory.keys else [])]
        if self.config.joint:
            k = torch.cat([k_self, *(memory.keys[s] for s in sources)], dim=2)
            v = torch.cat([v_self, *(memory.values[s] for s in sources)], dim=2)
            masks = [memory.key_mask[s] for s in sources]
            attn_mask = None
            if any(m is not None for m in masks):
                b, q_len = x.shape[0], x.shape[1]
                parts = [torch.ones(b, q_len, dtype=torch.bool, device=x.device)]
                parts += [
                    m
                    if m is not None
                    else torch.ones(b, memory.keys[s].shape[2], dtype=torch.bool, device=x.device)
                    for s, m in zip(sources, masks)
                ]
                attn_mask = torch.cat(parts, dim=1)[:, None, None, :]
            h = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        else:
            h = F.scaled_dot_product_attention(q, k_self, v_self)
            for s in sources:
                m = memory.key_mask[s]
                h = h + F.scaled_dot_product_attention(
                    q, memory.keys[s], memory.values[s], attn_mask=None if m is None else m[:, None, None, :]
                )
        return self.proj(rearrange(h, "b h q d -> b q (h d)"))
