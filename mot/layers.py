"""The action expert's transformer layer with layer-wise joint attention (paper section 3.3, eqs. 3-5).

Axes: B batch, L action tokens, S UE tokens, Hq query heads, Hkv key/value heads, d head width.

In layer l the AE computes its own q/k/v (own projections and q/k RMS norms, Qwen3 style), rotates
q and k at positions that continue after the UE sequence, and runs ONE attention of its queries over
[UE keys/values of layer l ; AE keys/values] (eq. 4-5). The UE's keys in the cache are already
rotated, exactly as the UE attended them, so the joint attention equals a single masked pass over
the concatenated sequence (tests/mot/test_oracle.py checks this against an independent build).

Rotary positions: Qwen3-VL uses interleaved M-RoPE over (time, height, width). For a token whose
three position components are equal (every text token, and every action token here) M-RoPE is
plain 1-D RoPE with the same inverse frequencies, which is what `rope_cos_sin` computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rope_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    """(d/2,) inverse frequencies, the formula of Qwen3-VL's default rotary embedding."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """positions (B, L) long -> cos, sin (B, L, d) float32 (halves duplicated, rotate-half layout)."""
    freqs = positions[..., None].float() * inv_freq.to(positions.device)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, L, d) rotated by cos/sin (B, L, d)."""
    cos, sin = cos[:, None].to(x.dtype), sin[:, None].to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class JointAttention(nn.Module):
    """AE queries over [UE K/V ; AE K/V] with one scaled-dot-product attention (GQA)."""

    def __init__(self, hidden: int, num_heads: int, num_kv_heads: int, head_dim: int, eps: float) -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(
                f"JointAttention.num_heads: expected a multiple of {num_kv_heads}, got {num_heads}"
            )
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.q_proj = nn.Linear(hidden, num_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, num_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, num_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * head_dim, hidden, bias=False)
        # Qwen3's per-head q/k norms keep attention logits bounded against the UE's normed keys.
        self.q_norm = nn.RMSNorm(head_dim, eps=eps)
        self.k_norm = nn.RMSNorm(head_dim, eps=eps)

    def qkv(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, L, D) -> q (B, Hq, L, d), k and v (B, Hkv, L, d); q and k rotated."""
        b, n, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(b, n, self.num_heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(b, n, self.num_kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.num_kv_heads, self.head_dim).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def forward(
        self,
        x: torch.Tensor,
        ue_keys: torch.Tensor,
        ue_values: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor,
    ) -> torch.Tensor:
        """x (B, L, D), ue_keys/values (B, Hkv, S, d), attn_mask (B, 1, L, S + L) bool -> (B, L, D)."""
        q, k, v = self.qkv(x, cos, sin)
        keys = torch.cat((ue_keys.to(k.dtype), k), dim=2)
        values = torch.cat((ue_values.to(v.dtype), v), dim=2)
        out = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=attn_mask, enable_gqa=self.num_heads != self.num_kv_heads
        )
        return self.o_proj(out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


class SwiGLU(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., D) -> (..., D)."""
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class ActionExpertLayer(nn.Module):
    """Pre-norm block: x + JointAttention(norm(x)); x + SwiGLU(norm(x))."""

    def __init__(
        self, hidden: int, num_heads: int, num_kv_heads: int, head_dim: int, intermediate: int, eps: float
    ) -> None:
        super().__init__()
        self.input_layernorm = nn.RMSNorm(hidden, eps=eps)
        self.self_attn = JointAttention(hidden, num_heads, num_kv_heads, head_dim, eps)
        self.post_attention_layernorm = nn.RMSNorm(hidden, eps=eps)
        self.mlp = SwiGLU(hidden, intermediate)

    def forward(
        self,
        x: torch.Tensor,
        ue_keys: torch.Tensor,
        ue_values: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor,
    ) -> torch.Tensor:
        """x (B, L, D) -> (B, L, D); see `JointAttention.forward` for the other shapes."""
        x = x + self.self_attn(self.input_layernorm(x), ue_keys, ue_values, cos, sin, attn_mask)
        return x + self.mlp(self.post_attention_layernorm(x))
