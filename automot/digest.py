"""Content digests of weights and settings: what a stored result (a UE cache, an episode record) was
computed by, so that it is never reused for something else.

    digest = state_digest(module.state_dict(), {"config": ...})   # sha256 hex

Tensors are hashed by name, dtype, shape and raw bytes (so a digest changes with any bit of any
weight or buffer); settings as sorted JSON (values JSON cannot hold by their repr).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch


def update_with_state(h, state: Mapping[str, torch.Tensor]) -> None:
    """Feed a state dict into the hashlib object `h` (sorted by name)."""
    for name, tensor in sorted(state.items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def state_digest(state: Mapping[str, torch.Tensor] | None = None, settings: Any = None) -> str:
    """sha256 hex of a state dict and JSON-able settings (either may be None)."""
    h = hashlib.sha256()
    if state is not None:
        update_with_state(h, state)
    h.update(json.dumps(settings, sort_keys=True, default=repr).encode())
    return h.hexdigest()
