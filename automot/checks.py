"""Input checks at library boundaries.

Every check raises `ValueError` naming the field, what was expected and what was received. Nothing is
reshaped, clipped or dropped silently.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch

# A shape spec: ints are exact sizes, strings are named sizes that must agree across one call
# (pass a shared `dims` dict), None accepts any size.
Dim = int | str | None


def check_tensor(
    name: str,
    value: object,
    shape: Sequence[Dim],
    *,
    dims: dict[str, int] | None = None,
    finite: bool = True,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Validate `value` is a tensor of `shape` (see `Dim`), optionally finite, and return it."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(
            f"{name}: expected a torch.Tensor of shape {_fmt(shape)}, got {type(value).__name__}"
        )
    if value.dim() != len(shape):
        raise ValueError(f"{name}: expected shape {_fmt(shape)}, got {tuple(value.shape)}")
    dims = {} if dims is None else dims
    for axis, (want, got) in enumerate(zip(shape, value.shape)):
        if want is None:
            continue
        if isinstance(want, str):
            if want in dims and dims[want] != got:
                raise ValueError(
                    f"{name}: expected shape {_fmt(shape)} with {want}={dims[want]}, "
                    f"got {tuple(value.shape)} (axis {axis} is {got})"
                )
            dims[want] = got
        elif want != got:
            raise ValueError(f"{name}: expected shape {_fmt(shape)}, got {tuple(value.shape)} (axis {axis})")
    if dtype is not None and value.dtype != dtype:
        raise ValueError(f"{name}: expected dtype {dtype}, got {value.dtype}")
    if finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"{name}: expected finite values, got {bad} NaN/Inf entries")
    return value


def check_mask(
    name: str, value: object, shape: Sequence[Dim], *, dims: dict[str, int] | None = None
) -> torch.Tensor:
    """A boolean key-padding mask (True = valid token) with at least one valid token per row."""
    mask = check_tensor(name, value, shape, dims=dims, dtype=torch.bool)
    if mask.numel() and not bool(mask.any(dim=-1).all()):
        raise ValueError(f"{name}: expected at least one valid (True) entry per row, got a row with none")
    return mask


def check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")


def check_name_list(
    name: str, value: object, choices: Sequence[str], *, allow_empty: bool = True
) -> list[str]:
    """`value` as a list of distinct names from `choices`; `ValueError` naming the field otherwise."""
    if (
        isinstance(value, str)
        or not isinstance(value, (list, tuple))
        or not all(isinstance(v, str) for v in value)
    ):
        raise ValueError(f"{name}: expected a list of names from {list(choices)}, got {value!r}")
    if not value and not allow_empty:
        raise ValueError(
            f"{name}: expected a non-empty list of names from {list(choices)}, got {list(value)}"
        )
    for item in value:
        check_choice(name, item, choices)
    if len(set(value)) != len(value):
        raise ValueError(f"{name}: expected each name once, got {list(value)}")
    return list(value)


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """A number > 0 (>= 0 with `allow_zero`); a string, a bool or None is refused with the field named,
    not compared (which would raise Python's TypeError, or pass True as 1)."""
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: expected a number {bound}, got {value!r}")
    if not (value >= 0 if allow_zero else value > 0):
        raise ValueError(f"{name}: expected a value {bound}, got {value!r}")


def _fmt(shape: Sequence[Dim]) -> str:
    return "(" + ", ".join("*" if d is None else str(d) for d in shape) + ")"
