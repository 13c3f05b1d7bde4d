"""Build nested dataclass configs from dicts (YAML/JSON/CLI overrides) with clear errors.

`build_config(Cls, value)` accepts None (defaults), an instance, or a dict whose keys must be fields
of `Cls`; nested dataclass fields (and lists of them) accept dicts too. Every value is checked
against its annotation before the dataclass is built (int, float, bool, str, None, lists, tuples,
dicts, unions of those), so `episodes: "many"` or a scalar where a list of seeds belongs is a
`ValueError` naming the field, the expected type and the value, not a `TypeError` deep inside.
`config_to_dict` is the inverse for JSON.
"""

from __future__ import annotations

import dataclasses
import types
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
            f"{cls.__name__}: expected a {cls.__name__}, a dict or None, got {type(value).__name__} {value!r}"
        )
    value = {**value, **overrides}
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; expected some of {sorted(known)}")
    required = sorted(
        n
        for n, f in known.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and n not in value
    )
    if required:
        raise ValueError(
            f"{cls.__name__}: missing required field(s) {required}; expected them, got {sorted(value)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, item in value.items():
        hint = hints.get(name)
        field = f"{cls.__name__}.{name}"
        sub = _dataclass_type(hint)
        if sub is not None and (item is None or isinstance(item, dict)):
            item = build_config(sub, item) if item is not None or not _allows_none(hint) else None
        elif isinstance(item, list) and _list_of_dataclass(hint) is not None:
            item = [_build_item(_list_of_dataclass(hint), x, f"{field}[{i}]") for i, x in enumerate(item)]
        elif isinstance(item, list) and _is_tuple(hint):
            item = tuple(item)  # JSON has no tuples
        check_type(field, item, hint)
        kwargs[name] = item
    return cls(**kwargs)


def _build_item(cls: type, item: Any, field: str):
    if isinstance(item, cls):
        return item
    if not isinstance(item, dict):
        raise ValueError(f"{field}: expected a mapping of {cls.__name__} fields, got {item!r}")
    try:
        return build_config(cls, item)
    except ValueError as err:
        raise ValueError(f"{field}: {err}") from None


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) dataclass config."""
    if not dataclasses.is_dataclass(config):
        raise ValueError(f"config: expected a dataclass instance, got {type(config).__name__}")
    return dataclasses.asdict(config)


def check_type(field: str, value: Any, hint: Any) -> None:
    """`ValueError` naming `field` when `value` does not fit the annotation `hint` (unknown kinds pass)."""
    if hint is None or _fits(value, hint):
        return
    raise ValueError(f"{field}: expected {_describe(hint)}, got {value!r} ({type(value).__name__})")


def _fits(value: Any, hint: Any) -> bool:
    if hint is Any or isinstance(hint, typing.TypeVar):
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if not args:
            return True
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
        return all(_fits(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            return False
        return not args or all(_fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items())
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # Literal, Callable, ...: not checked here


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is type(None):
        return "null"
    if origin in (list, tuple) and args:
        plural = {int: "ints", float: "numbers", bool: "true/false values", str: "strings"}
        inner = plural.get(args[0], f"items of type {_describe(args[0])}")
        return (
            f"a list of {inner}"
            if origin is list or args[-1] is Ellipsis
            else f"a list of {len(args)} values"
        )
    if origin is dict or hint is dict:
        return "a mapping"
    names = {
        int: "an int",
        float: "a number",
        bool: "true/false",
        str: "a string",
        list: "a list",
        tuple: "a list",
    }
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _allows_none(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)


def _dataclass_type(hint: Any) -> type | None:
    if hint is None:
        return None
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):  # Optional[Cfg] / Cfg | None
            if dataclasses.is_dataclass(arg):
                return arg
    return None


def _list_of_dataclass(hint: Any) -> type | None:
    if typing.get_origin(hint) is list:
        args = typing.get_args(hint)
        if args and dataclasses.is_dataclass(args[0]):
            return args[0]
    return None


def _is_tuple(hint: Any) -> bool:
    if hint is tuple or typing.get_origin(hint) is tuple:
        return True
    return (
        any(_is_tuple(a) for a in typing.get_args(hint))
        if typing.get_origin(hint) in (typing.Union, types.UnionType)
        else False
    )
