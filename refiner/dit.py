"""DiT decoder blocks with AdaLN-Zero conditioning (Peebles & Xie; paper appendix A.3).

Each block modulates its two sub-layers (the Mixture-of-Attention and the MLP) with a shift, scale
and gate regressed from the conditioning c; a seventh chunk gives the MoA bypass's scale a(c):

    x <- x + gate_msa(c) * MoA(modulate(LN x)) + a(c) * bypass
    x <- x + gate_mlp(c) * MLP(modulate(LN x))

The regression layer starts at zero, so every gate and a(c) are zero and every block is exactly the
identity at initialisation; the final layer starts at zero as well.

Axes: B batch, Q trajectory queries, D width.
"""

from __future__ import annotations

import torch
from torch import nn

from moa import MixtureOfAttention, MoAConfig, MoAMemory


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, Q, D), shift/scale (B, D) -> x * (1 + scale) + shift."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, act_layer: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), act_layer(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float, moa: MoAConfig, reasoning_dim: int = 0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = MixtureOfAttention(dim, moa, reasoning_dim=reasoning_dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))
        self.num_chunks = 7 if moa.bypass else 6
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, self.num_chunks * dim))
        nn.init.zeros_(self.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.adaLN_modulation[-1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, memory: MoAMemory) -> torch.Tensor:
        """x (B, Q, D), c (B, D), memory of this block's MoA -> (B, Q, D)."""
        chunks = self.adaLN_modulation(c).chunk(self.num_chunks, dim=-1)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = chunks[:6]
        bypass_scale = chunks[6] if self.num_chunks == 7 else None
        x = x + gate_msa[:, None, :] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), memory)
        if bypass_scale is not None and memory.bypass is not None:
            x = x + (bypass_scale * memory.bypass)[:, None, :]
        return x + gate_mlp[:, None, :] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    """AdaLN-modulated projection to per-query outputs; zero-initialised (outputs start at 0)."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, out_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        for layer in (self.linear, self.adaLN_modulation[-1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))
