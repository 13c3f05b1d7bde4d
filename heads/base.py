"""The planning-head interface, its registry, and what a plug-in head declares.

A head turns an `ActionContext` into a `Plan` and knows its own training loss. The MLP head is the
action expert's coarse decoder; the diffusion head refines the MLP head's proposal. Register a new
head with `@register_head("name")` (in your own module; `automot --import MODULE` or the
`automot.plugins` entry-point group make the CLI and studies see it) and build it with
`build_head("name", dims, **config)`.

The contract (everything the library calls; nothing else is assumed of a head):

    __init__(dims: ContextDims, **config)          config: JSON-ready keyword arguments
    forward(ctx, *, generator=None) -> Plan        waypoints (B, Nw, 2), route (B, Nr, 2)
    loss(ctx, target, *, generator=None) -> dict   at least "loss" (scalar); other entries are logged
    export_config() -> dict                        the config that rebuilds this head (saved in policies)

Capabilities, declared as class attributes (the defaults are those of a plain deterministic head):

    supports_samples = False   forward(..., num_samples=K) returns K candidates in
                               Plan.waypoint_samples (B, K, Nw, 2) / Plan.route_samples (B, K, Nr, 2);
                               call it through `head.candidates(ctx, K, generator=g)`
    is_stochastic = False      the plan depends on the generator (a sampling seed spreads results)
    refines_prior = False      built around a trained MLP head: `cls.from_mlp_head(mlp, **config)`,
                               which `training.policy.with_head` uses; `prior_head` returns that MLP head

Inputs are validated once, at the boundary: `PlanningHead.__call__` checks the context against the
head's `dims` (shapes, finite values) before `forward` runs, and the action expert checks its sensor
batch before any token is built, so a head's `forward` never sees a NaN or a wrong shape. Randomness
comes only from the `generator` argument (training passes a per-step generator; see
`training.stages.base.PolicyStage.step_generator`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from automot.registry import Registry
from heads.types import ActionContext, ContextDims, Plan, PlanTarget

HEADS: Registry[PlanningHead] = Registry("planning head")


class PlanningHead(nn.Module, ABC):
    """Interface every planning head implements (see the module docstring for the contract)."""

    name: ClassVar[str] = "?"
    supports_samples: ClassVar[bool] = False
    is_stochastic: ClassVar[bool] = False
    refines_prior: ClassVar[bool] = False

    # Set by the head's __init__: the context sizes it was built for.
    dims: ContextDims

    def __call__(self, ctx: ActionContext, *args: Any, **kwargs: Any) -> Plan:
        if not isinstance(ctx, ActionContext):
            raise ValueError(f"{type(self).__name__}: expected an ActionContext, got {type(ctx).__name__}")
        ctx.validate(getattr(self, "dims", None))
        return super().__call__(ctx, *args, **kwargs)

    @abstractmethod
    def forward(self, ctx: ActionContext, *, generator: torch.Generator | None = None) -> Plan: ...

    @abstractmethod
    def loss(
        self,
        ctx: ActionContext,
        target: PlanTarget,
        *,
        generator: torch.Generator | None = None,
        sample_weight: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """{"loss": scalar, ...parts} of the head's plan against `target`; `sample_weight` (B,) weights
        each sample's share of the batch mean (None: all 1; e.g. `training.keyframe`)."""

    def candidates(
        self, ctx: ActionContext, num_samples: int, *, generator: torch.Generator | None = None
    ) -> Plan:
        """A plan with `num_samples` candidates in `waypoint_samples` / `route_samples` (sampling heads)."""
        if not self.supports_samples:
            raise ValueError(
                f"head {self.name!r}: expected a head that declares supports_samples=True to draw "
                f"{num_samples} candidates, got one that does not"
            )
        return self(ctx, generator=generator, num_samples=num_samples)

    def export_config(self) -> dict[str, Any]:
        """JSON-ready keyword arguments that rebuild this head with `build_head(name, dims, **config)`.

        The default reads a dataclass `self.config`; a head without one returns the keyword arguments
        `build_head` built it with.
        """
        config = getattr(self, "config", None)
        if dataclasses.is_dataclass(config) and not isinstance(config, type):
            return dataclasses.asdict(config)
        return dict(getattr(self, "_build_kwargs", {}))

    @property
    def prior_head(self) -> PlanningHead | None:
        """The MLP head this head refines (`refines_prior` heads), else None."""
        return None

    @property
    def trains_prior(self) -> bool:
        """Whether this head's own loss trains its prior (False: the prior stays frozen)."""
        return False


def register_head(name: str):
    """Class decorator: make a `PlanningHead` subclass buildable by `build_head(name, ...)`."""

    def decorator(cls):
        if not (isinstance(cls, type) and issubclass(cls, PlanningHead)):
            raise ValueError(f"register_head({name!r}): expected a PlanningHead subclass, got {cls!r}")
        cls.name = name
        return HEADS.register(name)(cls)

    return decorator


def head_class(name: str) -> type[PlanningHead]:
    """The class registered as `name` (installed plug-ins are loaded when the name is unknown)."""
    return HEADS.get(name)


def build_head(name: str, dims: ContextDims, **config) -> PlanningHead:
    """Build the head registered as `name` for contexts of size `dims`; `config` overrides its defaults.

    A config the head does not accept (an unknown keyword, a bad value) is a `ValueError` naming it.
    """
    cls = head_class(name)
    try:
        head = cls(dims, **config)
    except TypeError as err:  # an unknown keyword of a head without a dataclass config
        raise ValueError(
            f"head {name!r}: expected keyword arguments it accepts, got {sorted(config)} ({err})"
        ) from err
    head._build_kwargs = dict(config)  # export_config's answer for a head without a dataclass config
    return head


def available_heads() -> list[str]:
    return HEADS.names()
