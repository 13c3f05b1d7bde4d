"""A name -> factory registry, one per family of swappable parts (heads, noise models, schedulers, ...).

A name that is not registered yet triggers loading the installed plug-ins (`automot.plugins`) once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories. Unknown names raise `ValueError` listing the known ones."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries and self._entries[name] is not factory:
                raise ValueError(f"{self.family} {name!r} is already registered to {self._entries[name]!r}")
            self._entries[name] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._entries:
            from automot.plugins import load_entry_points

            load_entry_points()  # an installed plug-in may register it (group "automot.plugins")
        if name not in self._entries:
            raise ValueError(
                f"unknown {self.family} {name!r}; expected one of {self.names()} "
                "(a plug-in's name needs its module imported: automot --import MODULE)"
            )
        return self._entries[name]

    def build(self, name: str, /, *args, **kwargs) -> T:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
