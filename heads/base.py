"""The planning-head interface and its registry.

A head turns an `ActionContext` into a `Plan` and knows its own training loss. The MLP head is the
action expert's coarse decoder; the diffusion head refines the MLP head's proposal. Register a new
head with `@register_head("name")` and build it with `build_head("name", **config)`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from automot.registry import Registry
from heads.types import ActionContext, ContextDims, Plan, PlanTarget

HEADS: Registry[PlanningHead] = Registry("planning head")


class PlanningHead(nn.Module, ABC):
    """Interface every planning head implements.

    `forward(ctx, *, generator=None) -> Plan` plans; `loss(ctx, target) -> dict` returns at least
    `"loss"` (a scalar to minimise) and any named parts for logging. A deterministic head ignores
    `generator`; a sampling head draws all its noise from it.
    """

    name: str = "?"

    @abstractmethod
    def forward(self, ctx: ActionContext, *, generator: torch.Generator | None = None) -> Plan: ...

    @abstractmethod
    def loss(self, ctx: ActionContext, target: PlanTarget) -> dict[str, torch.Tensor]: ...

    @property
    def is_stochastic(self) -> bool:
        """True when the plan depends on the generator (sampling spread exists)."""
        return False


def register_head(name: str):
    """Class decorator: make a `PlanningHead` subclass buildable by `build_head(name, ...)`."""

    def decorator(cls):
        cls.name = name
        return HEADS.register(name)(cls)

    return decorator


def build_head(name: str, dims: ContextDims, **config) -> PlanningHead:
    """Build the head registered as `name` for contexts of size `dims`; `config` overrides its defaults."""
    return HEADS.build(name, dims, **config)


def available_heads() -> list[str]:
    return HEADS.names()
