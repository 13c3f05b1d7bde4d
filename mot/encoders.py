"""The action expert's observation tokenizers (paper section 3.1, "Action Expert").

Axes: B batch, C channels, H/W image size, Hb/Wb BEV raster size, D AE width.

- `ImageTokens`: the current RGB frame through a timm backbone (random init, no hub access), its
  feature map pooled to a fixed grid, projected to D, plus a learned position per cell.
- `BEVTokens`: the BEV raster through strided convolutions, pooled to a fixed grid (the public
  AutoMoT code uses 8 x 8 = 64 tokens), projected to D, plus a learned position per cell.
- `StateTokens`: one token for the target point and (optionally) one for the ego state + history.
"""

from __future__ import annotations

import torch
from torch import nn

from automot import spec
from automot.checks import check_tensor


class ImageTokens(nn.Module):
    def __init__(self, model_name: str, grid: tuple[int, int], dim: int, init_std: float) -> None:
        super().__init__()
        import timm

        try:
            self.backbone = timm.create_model(model_name, pretrained=False, num_classes=0, global_pool="")
        except RuntimeError as err:  # timm raises RuntimeError for unknown names
            raise ValueError(
                f"ActionExpertConfig.image_encoder: expected a timm model name, got {model_name!r}"
            ) from err
        cfg = self.backbone.pretrained_cfg
        self.register_buffer(
            "mean", torch.tensor(cfg.get("mean", (0.5, 0.5, 0.5))).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(cfg.get("std", (0.5, 0.5, 0.5))).view(1, 3, 1, 1), persistent=False
        )
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.proj = nn.Linear(self.backbone.num_features, dim)
        self.pos = nn.Parameter(torch.randn(grid[0] * grid[1], dim) * init_std)

    @property
    def num_tokens(self) -> int:
        return self.pos.shape[0]

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb (B, 3, H, W) uint8 -> (B, gh * gw, D)."""
        check_tensor("rgb", rgb, ("B", 3, None, None), dtype=torch.uint8)
        x = (rgb.to(self.mean.dtype) / 255.0 - self.mean) / self.std
        feats = self.backbone.forward_features(x)
        if feats.dim() != 4:
            raise ValueError(
                f"ActionExpertConfig.image_encoder: expected a convolutional timm model with a (B, C, h, w) "
                f"feature map, got features of shape {tuple(feats.shape)}"
            )
        tokens = self.pool(feats).flatten(2).transpose(1, 2)
        return self.proj(tokens) + self.pos


class BEVTokens(nn.Module):
    def __init__(
        self, in_channels: int, channels: tuple[int, ...], grid: tuple[int, int], dim: int, init_std: float
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for c in channels:
            layers += [nn.Conv2d(prev, c, 3, stride=2, padding=1), nn.GroupNorm(1, c), nn.GELU()]
            prev = c
        self.convs = nn.Sequential(*layers)
        self.grid = grid
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.proj = nn.Linear(prev, dim)
        self.pos = nn.Parameter(torch.randn(grid[0] * grid[1], dim) * init_std)

    @property
    def num_tokens(self) -> int:
        return self.pos.shape[0]

    def forward(self, bev: torch.Tensor) -> torch.Tensor:
        """bev (B, C, Hb, Wb) float -> (B, gh * gw, D), row-major over the grid (forward = up)."""
        feats = self.convs(bev)
        if feats.shape[-2] < self.grid[0] or feats.shape[-1] < self.grid[1]:
            raise ValueError(
                f"bev: expected a raster large enough for a {self.grid} token grid after "
                f"{len(self.convs) // 3} stride-2 convolutions, got {tuple(bev.shape[-2:])}"
            )
        return self.proj(self.pool(feats).flatten(2).transpose(1, 2)) + self.pos


class StateTokens(nn.Module):
    """Target point (and ego state + history) -> 1 (or 2) tokens."""

    def __init__(self, dim: int, use_ego: bool, target_scale_m: float, ego_scale: float = 10.0) -> None:
        super().__init__()
        self.target_scale_m = target_scale_m
        # Speeds (m/s) and history positions (m) are tens of units: bring them to order one.
        self.ego_scale = ego_scale
        self.target = nn.Sequential(nn.Linear(2, dim), nn.GELU(), nn.Linear(dim, dim))
        ego_in = spec.EGO_STATE_DIM + spec.HISTORY_LEN * spec.HISTORY_DIM
        self.ego = nn.Sequential(nn.Linear(ego_in, dim), nn.GELU(), nn.Linear(dim, dim)) if use_ego else None

    @property
    def num_tokens(self) -> int:
        return 1 if self.ego is None else 2

    def forward(
        self, target_point: torch.Tensor, ego_state: torch.Tensor, ego_history: torch.Tensor
    ) -> torch.Tensor:
        """target_point (B, 2), ego_state (B, D_s), ego_history (B, H, D_h) -> (B, 1 or 2, D)."""
        tokens = [self.target(target_point / self.target_scale_m)]
        if self.ego is not None:
            tokens.append(self.ego(torch.cat((ego_state, ego_history.flatten(1)), dim=-1) / self.ego_scale))
        return torch.stack(tokens, dim=1)
