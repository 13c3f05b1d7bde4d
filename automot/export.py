"""Export folders (policies, understanding experts) that never destroy what else is in the folder.

An export is a folder of files written by the library plus `automot_export.json`, its manifest
(kind, format, the list of files). `export_directory(path, kind)` yields an empty temporary folder to
write into and then publishes it:

- `path` does not exist, or is an empty folder: the temporary folder is renamed onto it (atomic);
- `path` is a previous export of the same kind (its manifest says so, or, for folders written before
  manifests existed, `legacy(path)` recognises it): the manifest is removed first (the folder reads as
  unfinished), each new file is renamed into place (each rename atomic), files listed in the old
  manifest that the new export does not write are removed, and the new manifest is written last.
  Anything else in the folder (logs, checkpoints, the user's notes) stays where it is;
- `path` is a file, or a non-empty folder that is not such an export: `ValueError`, nothing written.

`check_export_target` runs the same test without writing, so a stage can refuse a bad `export_dir`
before it trains for hours. `is_complete_export` tells whether a folder holds a finished export.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from automot.io import make_dirs, temporary_name, write_json_atomic

MANIFEST = "automot_export.json"
FORMAT = 1


def read_manifest(path: str | os.PathLike) -> dict | None:
    """The manifest of the export at `path`, or None when there is none (or it is unreadable)."""
    file = Path(path) / MANIFEST
    try:
        manifest = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def is_complete_export(path: str | os.PathLike, kind: str) -> bool:
    manifest = read_manifest(path)
    return manifest is not None and manifest.get("kind") == kind


def check_export_target(
    path: str | os.PathLike,
    kind: str,
    *,
    field: str = "export_dir",
    legacy: Callable[[Path], bool] | None = None,
) -> str:
    """'new' (absent or empty), 'replace' (a previous export of `kind`), or `ValueError` naming `field`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{field}: expected a folder for the {kind} export, got the file {path}")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(
                f"{field}: expected a folder for the {kind} export at {path}, but {parent} is a file"
            )
    if not path.exists() or not any(path.iterdir()):
        return "new"
    manifest = read_manifest(path)
    if manifest is not None and manifest.get("kind") == kind:
        return "replace"
    if manifest is None and legacy is not None and legacy(path):
        return "replace"
    what = f"a {manifest.get('kind')!r} export" if manifest is not None else _describe(path)
    raise ValueError(
        f"{field}: expected a new or empty folder, or a previous {kind} export, at {path}; got {what}. "
        "Nothing was written: choose another folder (exports never overwrite other files)"
    )


@contextlib.contextmanager
def export_directory(
    path: str | os.PathLike,
    kind: str,
    *,
    field: str = "export_dir",
    legacy: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """Yield an empty temporary folder; on success its files become the `kind` export at `path`."""
    path = Path(path)
    check_export_target(path, kind, field=field, legacy=legacy)
    make_dirs(path.parent, field=field)
    tmp = temporary_name(path)
    tmp.mkdir(mode=0o777)  # the umask applies, unlike mkdtemp's 0o700
    try:
        yield tmp
        _honour_umask(tmp)
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        manifest = {"kind": kind, "format": FORMAT, "files": files}
        if check_export_target(path, kind, field=field, legacy=legacy) == "new":
            write_json_atomic(tmp / MANIFEST, manifest)
            if path.exists():
                path.rmdir()  # empty (checked just above)
            os.replace(tmp, path)
        else:
            _replace_files(tmp, path, files, manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _honour_umask(tmp: Path) -> None:
    """Give every written file and folder the umask's mode (some writers, e.g. safetensors, make 0o600
    files whatever the umask); `tmp` itself was made with mkdir(0o777), so it carries the umask."""
    folder_mode = stat.S_IMODE(tmp.stat().st_mode)
    for path in tmp.rglob("*"):
        os.chmod(path, folder_mode if path.is_dir() else folder_mode & 0o666)


def _replace_files(tmp: Path, path: Path, files: list[str], manifest: dict) -> None:
    old = read_manifest(path) or {}
    (path / MANIFEST).unlink(missing_ok=True)
    for rel in files:
        target = path / rel
        make_dirs(target.parent)
        if target.is_dir():
            raise ValueError(
                f"export {path}: expected {rel} to be a file, but a folder of that name is in the way"
            )
        os.replace(tmp / rel, target)
    for rel in set(old.get("files", [])) - set(files):
        stale = path / rel
        if stale.is_file() and stale.resolve().is_relative_to(path.resolve()):
            stale.unlink()
    write_json_atomic(path / MANIFEST, manifest)


def _describe(path: Path) -> str:
    names = sorted(p.name for p in path.iterdir())
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    return f"a folder holding {len(names)} other entr{'y' if len(names) == 1 else 'ies'} ({shown})"
