"""A toy world with planted discrete actions, for checking a latent action model end to end.

Each observation is a sparse binary raster (random boxes, C channels); the action is one of
`num_actions` planted shifts and the next observation is the current one shifted by it (zeros
flow in at the border, as new road does in a BEV).
A LAM that works must (a) keep several codes in use and (b) give codes from which a linear probe
reads the planted action back; neither the LAM nor its stage ever sees the action.
"""

from __future__ import annotations

import torch

# Planted shifts (rows, cols): no move, four directions, two diagonals, a long move.
SHIFTS = ((0, 0), (-3, 0), (3, 0), (0, -3), (0, 3), (-3, 3), (3, -3), (-6, 0))


def planted_transitions(
    n: int, *, num_actions: int = 6, size: int = 32, channels: int = 4, boxes: int = 6, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(obs (n, C, size, size), future (n, C, size, size), actions (n,) long), all seeded by `seed`."""
    if not 1 <= num_actions <= len(SHIFTS):
        raise ValueError(f"num_actions: expected 1..{len(SHIFTS)}, got {num_actions}")
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(size)
    obs = torch.zeros(n, channels, size, size)
    for _ in range(boxes):
        r = torch.randint(0, size - 4, (n, 1, 1), generator=g)
        c = torch.randint(0, size - 4, (n, 1, 1), generator=g)
        h = torch.randint(2, 6, (n, 1, 1), generator=g)
        w = torch.randint(2, 6, (n, 1, 1), generator=g)
        ch = torch.randint(0, channels, (n,), generator=g)
        inside = ((rows[None, :, None] >= r) & (rows[None, :, None] < r + h)) & (
            (rows[None, None, :] >= c) & (rows[None, None, :] < c + w)
        )  # (n, size, size)
        obs[torch.arange(n), ch] = torch.maximum(obs[torch.arange(n), ch], inside.float())
    actions = torch.randint(0, num_actions, (n,), generator=g)
    future = torch.stack([shift(obs[i], *SHIFTS[int(a)]) for i, a in enumerate(actions)])
    return obs, future, actions


def shift(image: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """image (..., H, W) moved by (rows, cols) pixels, zeros flowing in."""
    h, w = image.shape[-2:]
    padded = torch.nn.functional.pad(image, (abs(cols), abs(cols), abs(rows), abs(rows)))
    r0, c0 = abs(rows) - rows, abs(cols) - cols
    return padded[..., r0 : r0 + h, c0 : c0 + w]


def train_on_planted(
    lam, steps: int, *, num_actions: int = 6, batch_size: int = 32, lr: float = 3e-3, first_seed: int = 0
):
    """Train `lam` (16 x 16 rasters) with Adam on fresh planted transitions every step; returns it in
    eval mode. The actions are never shown to it."""
    opt = torch.optim.Adam(lam.parameters(), lr=lr)
    lam.train()
    for step in range(steps):
        obs, future, _ = planted_transitions(
            batch_size, size=16, num_actions=num_actions, seed=first_seed + step
        )
        loss = lam(obs, future).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lam.eval()


def planted_scores(lam, *, num_actions: int = 6, seed: int = 10**6) -> dict:
    """Codebook use and a linear probe (fitted on 256, scored on 256 held-out transitions)."""
    from latent.probe import probe_scores
    from latent.vq import code_statistics

    obs, future, actions = planted_transitions(512, size=16, num_actions=num_actions, seed=seed)
    codes = lam.codes(obs, future)
    k = lam.vq.size
    probe = probe_scores(
        codes[:256], actions[:256], codes[256:], actions[256:], codebook_size=k, num_classes=num_actions
    )
    return {**code_statistics(codes, k), "probe": probe}
