"""Trajectory queries (paper appendix A.3, eq. 7): temporal queries from the noisy waypoints and
spatial queries from the noisy route points, each with a learned position and type embedding,
concatenated to (B, Nw + Nr, D). When the clean anchor (the prior plan the sample was perturbed from)
is given, each query also embeds its anchor point, so the network knows both where the sample is
and where the prior was.

A point is embedded from random-free Fourier features of its (normalised) coordinates, which lets a
small MLP resolve centimetre-scale offsets. When the action expert's per-query latents are given,
their projection is added, so query i of the refiner knows what planning query i of the AE saw.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class FourierPoints(nn.Module):
    """(..., 2) -> (..., 2 + 4F): the coordinates and sin/cos at F octave-spaced frequencies per axis."""

    def __init__(self, num_freqs: int) -> None:
        super().__init__()
        self.register_buffer(
            "freqs", math.pi * 2.0 ** torch.arange(num_freqs, dtype=torch.float32), persistent=False
        )
        self.out_dim = 2 + 4 * num_freqs

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        angles = xy[..., None] * self.freqs.to(xy.dtype)  # (..., 2, F)
        return torch.cat([xy, angles.sin().flatten(-2), angles.cos().flatten(-2)], dim=-1)


class TrajectoryQueries(nn.Module):
    def __init__(
        self,
        dim: int,
        num_waypoints: int,
        num_route: int,
        *,
        num_freqs: int = 6,
        latent_dim: int = 0,
        with_anchor: bool = False,
    ) -> None:
        super().__init__()
        self.segments = (num_waypoints, num_route)
        self.fourier = FourierPoints(num_freqs)
        self.with_anchor = with_anchor
        in_dim = self.fourier.out_dim * (2 if with_anchor else 1)
        self.point_embed = nn.Sequential(nn.Linear(in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, num_waypoints + num_route, dim) * 0.02)
        self.type_embed = nn.Parameter(torch.randn(2, dim) * 0.02)  # 0 temporal, 1 spatial
        type_ids = torch.cat(
            [torch.zeros(num_waypoints, dtype=torch.long), torch.ones(num_route, dtype=torch.long)]
        )
        self.register_buffer("type_ids", type_ids, persistent=False)
        self.latent_proj = (
            nn.Sequential(nn.LayerNorm(latent_dim), nn.Linear(latent_dim, dim)) if latent_dim > 0 else None
        )

    def forward(
        self,
        points: torch.Tensor,
        plan_latents: torch.Tensor | None = None,
        anchor: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """points (B, Q, 2) noisy normalised [waypoints; route], plan_latents (B, Q, D_ae), anchor (B, Q, 2)
        the clean prior -> (B, Q, D), Q = Nw + Nr."""
        features = self.fourier(points)
        if self.with_anchor:
            if anchor is None:
                raise ValueError(
                    "anchor: expected (B, Nw + Nr, 2) for queries built with_anchor=True, got None"
                )
            features = torch.cat([features, self.fourier(anchor)], dim=-1)
        q = self.point_embed(features) + self.pos_embed + self.type_embed[self.type_ids]
        if self.latent_proj is not None:
            if plan_latents is None:
                raise ValueError(
                    "plan_latents: expected (B, Nw + Nr, D_ae) for queries built with latent_dim > 0, got None"
                )
            q = q + self.latent_proj(plan_latents)
        return q
