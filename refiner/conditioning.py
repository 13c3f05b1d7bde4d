"""The refiner's AdaLN conditioning c (paper appendix A.3): diffusion timestep + ego state + ego history.

    c = TimestepEmbedding(Timesteps(t)) + MLP(ego_state / s) + MLP(flatten(ego_history) / s)

The timestep part reuses diffusers' sinusoidal `Timesteps` and `TimestepEmbedding`. The ego part does
not depend on t, so it is computed once per sample (`ego`) and added to every step's time embedding.
`s` (state_scale) brings speeds and metres to order one.
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, act_layer: type[nn.Module] = nn.SiLU) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), act_layer(), nn.Linear(hidden, out_dim))


class ConditionEncoder(nn.Module):
    def __init__(
        self,
        dim: int,
        ego_state_dim: int,
        history_len: int,
        history_dim: int,
        *,
        freq_dim: int = 256,
        state_scale: float = 10.0,
    ) -> None:
        super().__init__()
        self.history_shape = (history_len, history_dim)
        self.state_scale = state_scale
        self.time_proj = Timesteps(freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(freq_dim, dim)
        self.ego_embed = mlp(ego_state_dim, dim, dim)
        self.history_embed = mlp(history_len * history_dim, dim, dim)

    def ego(self, ego_state: torch.Tensor, ego_history: torch.Tensor) -> torch.Tensor:
        """ego_state (B, D_s), ego_history (B, H, D_h) -> (B, D)."""
        s = self.state_scale
        return self.ego_embed(ego_state / s) + self.history_embed(ego_history.flatten(1) / s)

    def time(self, t: torch.Tensor) -> torch.Tensor:
        """t (B,) long -> (B, D)."""
        emb = self.time_proj(t)
        return self.time_embed(emb.to(self.time_embed.linear_1.weight.dtype))
