"""Training randomness that is a function of (train_seed, global_step) only.

A fit resumed from a Lightning checkpoint restarts its process with a fresh global RNG (Lightning does
not store it), so anything drawn from the global RNG during a step (dropout in a plug-in head or a UE
with attention dropout, a stray `torch.rand`) would differ from the uninterrupted run. Stages therefore:
- pass `step_generator(seed, step)` to whatever takes a generator (a diffusion head's t and noise);
- run each training step inside `step_global_rng(seed, step)`, which seeds the global RNG for that step
  from (seed, step) and restores the outer state afterwards.
The seed itself is drawn once from the global RNG (so `seed_everything` decides it) and stored in the
checkpoint (`CHECKPOINT_KEY`), so a resumed run uses the seed of the run it continues.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

CHECKPOINT_KEY = "automot_train_seed"
_MOD = 2**63 - 1
_GLOBAL_STREAM = 0x9E3779B97F4A7C15  # keeps the global-RNG stream apart from the generator's


def draw_train_seed() -> int:
    """A seed drawn from the global RNG (seeded by `seed_everything`)."""
    return int(torch.randint(0, 2**62, (1,)).item())


def _seed(train_seed: int, step: int) -> int:
    return (int(train_seed) * 1_000_003 + int(step)) % _MOD


def step_generator(train_seed: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator of one optimisation step's training noise."""
    return torch.Generator(device=device).manual_seed(_seed(train_seed, step))


def stream_generator(train_seed: int, step: int, stream: int) -> torch.Generator:
    """A CPU generator of one step's draws for another purpose than the training noise (e.g. input
    augmentation): `stream` keeps it apart from `step_generator` and from other streams."""
    return torch.Generator().manual_seed((_seed(train_seed, step) + int(stream)) % _MOD)


@contextlib.contextmanager
def step_global_rng(train_seed: int, step: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Inside: the global RNG (CPU, and `device` when it is a GPU) is seeded from (train_seed, step);
    afterwards it is back where it was."""
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        seed = (_seed(train_seed, step) + _GLOBAL_STREAM) % _MOD
        torch.manual_seed(seed)
        yield
