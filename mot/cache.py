"""`UECache`: what the understanding expert leaves behind for the action expert (paper eq. 3).

Axes: B batch, L layers, Hkv key/value heads, S UE sequence length, d head width, D_ue UE width.

A cache is written once by the UE's prefill and never mutated afterwards: the fast-slow runtime
publishes a finished cache by swapping one reference, so a reader holds either the old or the new
cache, never a mixture.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from automot.checks import check_mask, check_tensor
from mot.config import UEGeometry


@dataclass(frozen=True)
class UECache:
    """Per-layer UE keys/values plus the UE's final hidden states.

    keys, values:     L tensors (B, Hkv, S, d), keys already rotated (RoPE) as the UE attended them;
                      entries at padded positions are zero.
    hidden:           (B, S, D_ue) the UE's final (normed) hidden states: the reasoning tokens.
    mask:             (B, S) bool, True = a real token (False = padding).
    position_offset:  (B,) long, the first rotary position after the UE sequence: action tokens
                      continue from here.
    step, time_s:     the step index and time of the observation the UE saw.
    generation:       a counter the producer may set (the fast-slow runtime numbers its refreshes).
    reasoning_mask:   (B, S) bool, True = a token the UE generated (chain-of-thought) after the
                      prompt, or None when the cache holds the prompt only. Always a subset of `mask`.
    reasoning_text:   the generated text per sample (special tokens removed), or None.
    """

    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]
    hidden: torch.Tensor
    mask: torch.Tensor
    position_offset: torch.Tensor
    step: int = 0
    time_s: float = 0.0
    generation: int = 0
    reasoning_mask: torch.Tensor | None = None
    reasoning_text: tuple[str, ...] | None = None

    @property
    def num_layers(self) -> int:
        return len(self.keys)

    @property
    def batch_size(self) -> int:
        return self.hidden.shape[0]

    @property
    def seq_len(self) -> int:
        return self.hidden.shape[1]

    def validate(self, geometry: UEGeometry | None = None, *, check_values: bool = True) -> UECache:
        """Check shapes agree with each other (and with `geometry`); raises ValueError naming the field.

        `check_values` also scans every tensor for NaN/Inf: done once where a cache is made, not on
        every fast step that reads it (at paper scale that scan alone would cost more than the step).
        """
        if not isinstance(self.keys, tuple) or not isinstance(self.values, tuple):
            raise ValueError(
                f"UECache.keys/values: expected tuples of per-layer tensors, got {type(self.keys).__name__}/"
                f"{type(self.values).__name__}"
            )
        if len(self.keys) != len(self.values) or not self.keys:
            raise ValueError(
                f"UECache.values: expected as many layers as keys ({len(self.keys)}, at least 1), got {len(self.values)}"
            )
        if geometry is not None and len(self.keys) != geometry.num_layers:
            raise ValueError(
                f"UECache.keys: expected {geometry.num_layers} layers (the UE depth), got {len(self.keys)}"
            )
        dims: dict[str, int] = {}
        if geometry is not None:
            dims.update(Hkv=geometry.num_kv_heads, d=geometry.head_dim, D_ue=geometry.hidden_size)
        check_tensor("UECache.hidden", self.hidden, ("B", "S", "D_ue"), dims=dims, finite=check_values)
        check_mask("UECache.mask", self.mask, ("B", "S"), dims=dims)
        check_tensor("UECache.position_offset", self.position_offset, ("B",), dims=dims, dtype=torch.long)
        for i, (k, v) in enumerate(zip(self.keys, self.values)):
            check_tensor(f"UECache.keys[{i}]", k, ("B", "Hkv", "S", "d"), dims=dims, finite=check_values)
            check_tensor(f"UECache.values[{i}]", v, ("B", "Hkv", "S", "d"), dims=dims, finite=check_values)
        if (self.reasoning_mask is None) != (self.reasoning_text is None):
            raise ValueError(
                "UECache.reasoning_text: expected it exactly when reasoning_mask is given, got "
                f"reasoning_mask={'set' if self.reasoning_mask is not None else None}, "
                f"reasoning_text={self.reasoning_text!r}"
            )
        if self.reasoning_mask is not None:
            check_mask("UECache.reasoning_mask", self.reasoning_mask, ("B", "S"), dims=dims)
            if bool((self.reasoning_mask & ~self.mask).any()):
                raise ValueError(
                    "UECache.reasoning_mask: expected generated tokens to be real tokens (mask True)"
                )
            if not isinstance(self.reasoning_text, tuple) or len(self.reasoning_text) != dims["B"]:
                raise ValueError(
                    f"UECache.reasoning_text: expected a tuple of {dims['B']} strings, got {self.reasoning_text!r}"
                )
        return self

    @property
    def num_generated(self) -> torch.Tensor:
        """(B,) long: how many reasoning tokens each sample generated (0 without reasoning)."""
        if self.reasoning_mask is None:
            return torch.zeros(self.batch_size, dtype=torch.long, device=self.mask.device)
        return self.reasoning_mask.sum(1)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> UECache:
        def move(x: torch.Tensor) -> torch.Tensor:
            return (
                x.to(device=device, dtype=dtype)
                if dtype is not None and x.is_floating_point()
                else x.to(device)
            )

        return replace(
            self,
            keys=tuple(move(k) for k in self.keys),
            values=tuple(move(v) for v in self.values),
            hidden=move(self.hidden),
            mask=self.mask.to(device),
            position_offset=self.position_offset.to(device),
            reasoning_mask=None if self.reasoning_mask is None else self.reasoning_mask.to(device),
        )

    def split(self) -> list[UECache]:
        """One cache per sample (B = 1), padding removed: the inverse of `UECache.stack`."""
        out = []
        for i in range(self.batch_size):
            keep = self.mask[i]
            out.append(
                replace(
                    self,
                    keys=tuple(k[i : i + 1, :, keep] for k in self.keys),
                    values=tuple(v[i : i + 1, :, keep] for v in self.values),
                    hidden=self.hidden[i : i + 1, keep],
                    mask=self.mask[i : i + 1, keep],
                    position_offset=self.position_offset[i : i + 1],
                    reasoning_mask=None
                    if self.reasoning_mask is None
                    else self.reasoning_mask[i : i + 1, keep],
                    reasoning_text=None if self.reasoning_text is None else self.reasoning_text[i : i + 1],
                )
            )
        return out

    @staticmethod
    def stack(caches: list[UECache]) -> UECache:
        """Batch caches of any lengths, left-padded like the UE's own batches (padding is zero and masked).

        The action expert's output for a sample does not depend on how it was padded, so a batch
        assembled from stored per-sample caches plans exactly like a fresh prefill of that batch.
        """
        if not caches:
            raise ValueError("caches: expected at least one UECache, got an empty list")
        s = max(c.seq_len for c in caches)

        def pad(x: torch.Tensor, seq_dim: int) -> torch.Tensor:
            missing = s - x.shape[seq_dim]
            if not missing:
                return x
            shape = list(x.shape)
            shape[seq_dim] = missing
            return torch.cat([x.new_zeros(shape), x], dim=seq_dim)

        first = caches[0]
        with_reasoning = {c.reasoning_mask is not None for c in caches}
        if len(with_reasoning) != 1:
            raise ValueError(
                "caches: expected all caches with reasoning tokens or none, got a mixture "
                f"({[c.reasoning_mask is not None for c in caches]})"
            )
        reasoning = first.reasoning_mask is not None
        return replace(
            first,
            keys=tuple(torch.cat([pad(c.keys[i], 2) for c in caches]) for i in range(first.num_layers)),
            values=tuple(torch.cat([pad(c.values[i], 2) for c in caches]) for i in range(first.num_layers)),
            hidden=torch.cat([pad(c.hidden, 1) for c in caches]),
            mask=torch.cat([pad(c.mask, 1) for c in caches]),
            position_offset=torch.cat([c.position_offset for c in caches]),
            reasoning_mask=torch.cat([pad(c.reasoning_mask, 1) for c in caches]) if reasoning else None,
            reasoning_text=tuple(t for c in caches for t in c.reasoning_text) if reasoning else None,
        )

    def with_generation(self, generation: int) -> UECache:
        """The same tensors under a new generation number (no copy)."""
        return replace(self, generation=generation)

    def nbytes(self) -> int:
        tensors = [*self.keys, *self.values, self.hidden, self.mask, self.position_offset]
        if self.reasoning_mask is not None:
            tensors.append(self.reasoning_mask)
        return sum(t.numel() * t.element_size() for t in tensors)
