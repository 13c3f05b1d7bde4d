"""Plug-ins: user modules that register heads (and, later, stages, policies, scenarios) by importing.

Two ways in, both ending in a plain `import`:

- `automot ... --import MODULE` (repeatable, on every subcommand) imports MODULE before the command
  runs; `--import path/to/file.py` imports a file (its folder is put on `sys.path`). The current
  folder is on `sys.path` for these imports, as it is for `python -m`.
- an installed distribution declares an entry point in the group `automot.plugins`:

      [project.entry-points."automot.plugins"]
      my_heads = "my_package.heads"          # a module (imported), or "pkg.mod:setup" (called)

  Entry points are loaded the first time a registry is asked for a name it does not know, so an
  installed plug-in works in the CLI, in study workers and in plain Python alike.

Study workers and policy folders record the modules they need (`import_modules`), so a spawned
worker or a later `load_pretrained` imports them again; a module that cannot be imported is a
`ValueError` naming it and the reason.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from importlib import metadata
from pathlib import Path

ENTRY_POINT_GROUP = "automot.plugins"

_entry_points_loaded = False


def import_module(name: str, *, field: str = "--import", needed_for: str | None = None):
    """Import a plug-in module by dotted name or `.py` path; failures are `ValueError` naming it."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{field}: expected a module name or a .py file, got {name!r}")
    why = f" (needed for {needed_for})" if needed_for else ""
    if name.endswith(".py"):
        return _import_file(Path(name), field, why)
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)  # as `python -m` would; appended so nothing installed is shadowed
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ValueError(
            f"{field}: expected an importable module {name!r}{why}, got {type(err).__name__}: {err}. "
            "Install the package that provides it or put it on PYTHONPATH"
        ) from err


def import_modules(names, *, field: str = "--import", needed_for: str | None = None) -> list[str]:
    """Import every module of `names` (in order); returns the names imported."""
    names = list(names or [])
    for name in names:
        import_module(name, field=field, needed_for=needed_for)
    return names


def _import_file(path: Path, field: str, why: str):
    if not path.is_file():
        raise ValueError(f"{field}: expected an existing .py file{why}, got {path}")
    name = path.stem
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)  # so spawned workers (which copy sys.path) import it by name too
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path.resolve()):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path.resolve())
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise ValueError(
            f"{field}: expected {path} to import cleanly{why}, got {type(err).__name__}: {err}"
        ) from err
    return module


def load_entry_points() -> list[str]:
    """Load every installed `automot.plugins` entry point once; returns their names."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return []
    _entry_points_loaded = True
    loaded = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as err:
            dist = getattr(ep.dist, "name", "?")
            raise ValueError(
                f"entry point {ep.name!r} ({ep.value}) of {dist} in group {ENTRY_POINT_GROUP}: expected an "
                f"importable plug-in, got {type(err).__name__}: {err}"
            ) from err
        if callable(obj) and not isinstance(obj, type(sys)):
            obj()
        loaded.append(ep.name)
    return loaded


def module_of(obj) -> str:
    """The importable module that defines `obj` (a class or function)."""
    module = getattr(obj, "__module__", None) or ""
    if module == "__main__":
        path = getattr(sys.modules["__main__"], "__file__", None)
        return path or module
    return module
