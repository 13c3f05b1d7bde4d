"""Convolutional building blocks of the latent action model: a strided stem that keeps its
intermediate maps (for skip connections) and its mirror-image upsampler. (The transformer block is
`heads.blocks.TransformerBlock`.)

Axes: B batch, C channels, H/W image size.
"""

from __future__ import annotations

import torch
from torch import nn


def _groups(channels: int) -> int:
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class ConvStem(nn.Module):
    """(B, C, H, W) -> maps at H/2, H/4, ..., H/2^n; the last has `width` channels."""

    def __init__(self, in_channels: int, width: int, downsamples: int) -> None:
        super().__init__()
        self.channels = [max(8, width // 2 ** (downsamples - 1 - i)) for i in range(downsamples)]
        layers, prev = [], in_channels
        for c in self.channels:
            layers.append(
                nn.Sequential(
                    nn.Conv2d(prev, c, 4, stride=2, padding=1), nn.GroupNorm(_groups(c), c), nn.GELU()
                )
            )
            prev = c
        self.levels = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for level in self.levels:
            x = level(x)
            maps.append(x)
        return maps


class ConvUpsampler(nn.Module):
    """Mirror of a `ConvStem`: from its last map back to (B, out, H, W), concatenating the stem's map
    at every scale and the input image at full resolution (U-Net skips)."""

    def __init__(self, stem: ConvStem, in_channels: int, out_channels: int) -> None:
        super().__init__()
        chans = stem.channels
        self.ups = nn.ModuleList()
        self.fuse = nn.ModuleList()
        prev = chans[-1]
        targets = [*list(reversed(chans[:-1])), max(8, chans[0] // 2)]
        skips = [*list(reversed(chans[:-1])), in_channels]
        for c, skip in zip(targets, skips):
            self.ups.append(nn.ConvTranspose2d(prev, c, 4, stride=2, padding=1))
            self.fuse.append(
                nn.Sequential(nn.Conv2d(c + skip, c, 3, padding=1), nn.GroupNorm(_groups(c), c), nn.GELU())
            )
            prev = c
        self.out = nn.Conv2d(prev, out_channels, 1)

    def forward(self, x: torch.Tensor, stem_maps: list[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        skips = [*list(reversed(stem_maps[:-1])), image]
        for up, fuse, skip in zip(self.ups, self.fuse, skips):
            x = fuse(torch.cat((up(x), skip), dim=1))
        return self.out(x)
