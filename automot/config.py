"""Build nested dataclass configs from dicts (YAML/JSON/CLI overrides) with clear errors.

`build_config(Cls, value)` accepts None (defaults), an instance, or a dict whose keys must be fields
of `Cls`; nested dataclass fields accept dicts too. `config_to_dict` is the inverse for JSON.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

C = TypeVar("C")


def build_config(cls: type[C], value: C | dict[str, Any] | None = None, **overrides: Any) -> C:
    if value is None:
        value = {}
    if isinstance(value, cls):
        if not overrides:
            return value
        value = config_to_dict(value)
    if not isinstance(value, dict):
        raise ValueError(
            f"{cls.__name__}: expected a {cls.__name__}, a dict or None, got {type(value).__name__}"
        )
    value = {**value, **overrides}
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; expected some of {sorted(known)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, item in value.items():
        sub = _dataclass_type(hints.get(name))
        if sub is not None and (item is None or isinstance(item, dict)):
            item = build_config(sub, item)
        elif isinstance(item, list) and _is_tuple(hints.get(name)):
            item = tuple(item)  # JSON has no tuples
        kwargs[name] = item
    return cls(**kwargs)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) dataclass config."""
    if not dataclasses.is_dataclass(config):
        raise ValueError(f"config: expected a dataclass instance, got {type(config).__name__}")
    return dataclasses.asdict(config)


def _dataclass_type(hint: Any) -> type | None:
    if hint is None:
        return None
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):  # Optional[Cfg] / Cfg | None
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _is_tuple(hint: Any) -> bool:
    return hint is tuple or typing.get_origin(hint) is tuple
