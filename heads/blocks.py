"""A pre-norm transformer block (joint self-attention, optional cross-attention to a memory, MLP)
over `F.scaled_dot_product_attention`, shared by the transformer-decoder head (`heads.student`) and
the latent action model (`latent.lam`).

Axes: B batch, N tokens, S memory tokens, D width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, kv_dim: int | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, N, D) attends over memory (B, S, D_kv) (x itself when None); mask (B, S) True = valid."""
        memory = x if memory is None else memory
        b, n, d = x.shape
        h = self.num_heads
        q = self.q(x).view(b, n, h, d // h).transpose(1, 2)
        k, v = self.kv(memory).view(b, memory.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        attn_mask = None if mask is None else mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class TransformerBlock(nn.Module):
    """x += SelfAttn(LN x); [x += CrossAttn(LN x, memory)]; x += MLP(LN x)."""

    def __init__(self, dim: int, num_heads: int, cross: bool = False, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm_cross = nn.LayerNorm(dim) if cross else None
        self.cross = Attention(dim, num_heads) if cross else None
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, N, D); memory (B, S, D) and memory_mask (B, S) for a block built with `cross`."""
        x = x + self.attn(self.norm1(x))
        if self.cross is not None:
            if memory is None:
                raise ValueError("memory: expected (B, S, D) tokens for a cross-attention block, got None")
            x = x + self.cross(self.norm_cross(x), memory, memory_mask)
        return x + self.mlp(self.norm2(x))
