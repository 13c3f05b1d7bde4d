"""Memoised action contexts of a frozen action expert, for training a head on top of it.

When the refiner stage keeps the AE frozen (and in eval mode), a dataset sample's `ActionContext`
is the same every epoch, just as its UE cache is (`training.ue_memo`). `ContextMemo` stores one
context per sample (reasoning tokens without their padding), computed for each unseen sample alone,
and re-batches them, so after the first epoch a refiner step costs only the refiner. The re-batched
context equals a fresh one up to the padding of the reasoning tokens, which every consumer masks
(tested), and does not depend on which batch first met the sample (resume is bit-identical).

Axes: B batch, S reasoning tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable

import torch

from heads import ActionContext
from training.ue_memo import DEFAULT_MEMO_BYTES, MemoBudget


def split_context(ctx: ActionContext) -> list[ActionContext]:
    """A batch context -> one context per sample (B = 1), reasoning padding removed."""
    out = []
    for i in range(ctx.batch_size):
        fields = {f.name: _row(getattr(ctx, f.name), i) for f in dataclasses.fields(ctx)}
        if ctx.reasoning_tokens is not None and ctx.reasoning_mask is not None:
            keep = ctx.reasoning_mask[i]
            fields["reasoning_tokens"] = fields["reasoning_tokens"][:, keep]
            fields["reasoning_mask"] = fields["reasoning_mask"][:, keep]
        out.append(ActionContext(**fields))
    return out


def stack_contexts(contexts: list[ActionContext]) -> ActionContext:
    """Per-sample contexts -> one batch context; reasoning tokens left-padded (zero, masked)."""
    if not contexts:
        raise ValueError("contexts: expected at least one ActionContext, got an empty list")
    first = contexts[0]
    fields = {}
    for f in dataclasses.fields(first):
        values = [getattr(c, f.name) for c in contexts]
        if values[0] is None:
            fields[f.name] = None
        elif f.name in ("reasoning_tokens", "reasoning_mask"):
            s = max(v.shape[1] for v in values)
            fields[f.name] = torch.cat([_left_pad(v, s) for v in values])
        else:
            fields[f.name] = torch.cat(values)
    if first.reasoning_tokens is not None and first.reasoning_mask is None:
        lengths = {c.reasoning_tokens.shape[1] for c in contexts}
        if len(lengths) > 1:
            raise ValueError(
                f"reasoning_mask: expected masks for reasoning tokens of lengths {sorted(lengths)}, got None"
            )
    return ActionContext(**fields)


class ContextMemo:
    """`get(sensors, keys, compute)`: the batch's context, re-batched from per-sample contexts.

    `compute(sensors, keys)` runs on each unseen sample *alone* (a one-sample `SensorBatch` and its
    key), so a stored context does not depend on the batch (and padding) the sample was first met in:
    a resumed run, whose batches meet unseen samples in other company, trains on the same bits."""

    def __init__(self, max_items: int = 200_000, max_bytes: int | None = DEFAULT_MEMO_BYTES) -> None:
        """`max_items` / `max_bytes` (None: no limit): how many contexts, and how many bytes of them,
        are kept (host memory); samples met past either limit are computed again when they return."""
        self.budget = MemoBudget(max_items, max_bytes)
        self._store: dict[Hashable, ActionContext] = {}
        self.hits = self.misses = 0

    def get(
        self,
        sensors,
        keys: list[Hashable] | None,
        compute: Callable[[object, list[Hashable] | None], ActionContext],
    ) -> ActionContext:
        if keys is None or self.budget.max_items == 0:
            return compute(sensors, keys)
        device = sensors.ego_state.device
        missing = [i for i, k in enumerate(keys) if k not in self._store]
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        fresh = {}
        for i in missing:
            (one,) = split_context(compute(sensors.select([i]), [keys[i]]).detach())
            fresh[keys[i]] = _to(one, "cpu")
            if keys[i] not in self._store and self.budget.admit(context_nbytes(fresh[keys[i]])):
                self._store[keys[i]] = fresh[keys[i]]
        return _to(stack_contexts([self._store.get(k, fresh.get(k)) for k in keys]), device)


def context_nbytes(ctx: ActionContext) -> int:
    """Bytes of the tensors of an `ActionContext`."""
    values = (getattr(ctx, f.name) for f in dataclasses.fields(ctx))
    return sum(v.numel() * v.element_size() for v in values if isinstance(v, torch.Tensor))


def _row(x, i: int):
    return x[i : i + 1] if isinstance(x, torch.Tensor) else x


def _left_pad(x: torch.Tensor, s: int) -> torch.Tensor:
    missing = s - x.shape[1]
    if not missing:
        return x
    shape = list(x.shape)
    shape[1] = missing
    return torch.cat([x.new_zeros(shape), x], dim=1)


def _to(ctx: ActionContext, device) -> ActionContext:
    return dataclasses.replace(
        ctx,
        **{
            f.name: getattr(ctx, f.name).to(device)
            for f in dataclasses.fields(ctx)
            if isinstance(getattr(ctx, f.name), torch.Tensor)
        },
    )
