"""Exports never destroy: a folder holding anything else is refused, a previous export is replaced
file by file (everything else stays), a file path is an error, and modes honour the umask."""

import contextlib
import json
import os
import stat

import pytest
import torch

from automot.export import MANIFEST, export_directory, is_complete_export
from automot.io import atomic_path, save_safetensors_atomic, write_json_atomic


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _write(folder, files):
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_export_appears_whole_with_its_manifest(tmp_path):
    target = tmp_path / "a" / "policy"
    with export_directory(target, "policy") as tmp:
        _write(tmp, {"w.bin": "1", "sub/c.json": "{}"})
        assert not target.exists()  # nothing under the final name until it is complete
    manifest = json.loads((target / MANIFEST).read_text())
    assert manifest["kind"] == "policy" and manifest["files"] == ["sub/c.json", "w.bin"]
    assert is_complete_export(target, "policy") and not is_complete_export(target, "ue")
    assert [p.name for p in tmp_path.joinpath("a").iterdir()] == ["policy"]  # no temporary left


def test_a_folder_holding_other_files_is_refused_and_left_as_it_was(tmp_path):
    target = tmp_path / "results"
    _write(target, {"notes.txt": "mine", "precious/results.csv": "a,b\n1,2\n"})
    ran = []
    refused = pytest.raises(ValueError, match=r"export_dir: expected a new or empty folder.*notes.txt")
    with refused, export_directory(target, "policy") as tmp:
        ran.append(tmp)
    assert not ran  # refused before anything was written
    assert (target / "notes.txt").read_text() == "mine"
    assert (target / "precious/results.csv").read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt", "precious"]


def test_replacing_an_export_keeps_everything_else(tmp_path):
    target = tmp_path / "ue"
    with export_directory(target, "ue") as tmp:
        _write(tmp, {"model.bin": "old", "old_only.json": "x"})
    _write(target, {"logs/version_0/metrics.csv": "step\n0\n", "notes.txt": "mine"})
    with export_directory(target, "ue") as tmp:
        _write(tmp, {"model.bin": "new"})
    assert (target / "model.bin").read_text() == "new"
    assert not (target / "old_only.json").exists()  # the previous export's own file, no longer written
    assert (target / "logs/version_0/metrics.csv").read_text() == "step\n0\n"
    assert (target / "notes.txt").read_text() == "mine"
    assert json.loads((target / MANIFEST).read_text())["files"] == ["model.bin"]


def test_an_export_of_another_kind_or_a_file_is_refused(tmp_path):
    with export_directory(tmp_path / "p", "policy") as tmp:
        _write(tmp, {"w": "1"})
    with (
        pytest.raises(ValueError, match=r"export_dir: .*got a 'policy' export"),
        export_directory(tmp_path / "p", "ue"),
    ):
        pass
    (tmp_path / "f").write_text("keep")
    with (
        pytest.raises(ValueError, match=r"export_dir: expected a folder .* got the file"),
        export_directory(tmp_path / "f", "ue"),
    ):
        pass
    assert (tmp_path / "f").read_text() == "keep"


def test_a_failed_export_leaves_the_previous_one(tmp_path):
    target = tmp_path / "p"
    with export_directory(target, "policy") as tmp:
        _write(tmp, {"w": "old"})
    with pytest.raises(RuntimeError), export_directory(target, "policy") as tmp:
        _write(tmp, {"w": "new"})
        raise RuntimeError("killed while writing")
    assert (target / "w").read_text() == "old" and is_complete_export(target, "policy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_a_legacy_folder_is_replaced_only_when_recognised(tmp_path):
    legacy = tmp_path / "old_policy"
    _write(legacy, {"mot_config.json": "{}", "notes.txt": "mine"})
    with export_directory(legacy, "policy", legacy=lambda p: (p / "mot_config.json").exists()) as tmp:
        _write(tmp, {"mot_config.json": '{"new": 1}'})
    assert (legacy / "notes.txt").read_text() == "mine" and "new" in (legacy / "mot_config.json").read_text()


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_files_and_folders_honour_the_umask(tmp_path, mask):
    with umask(mask):
        with export_directory(tmp_path / "e", "policy") as tmp:
            _write(tmp, {"w": "1"})
            (tmp / "w").chmod(0o600)  # as safetensors writes its files, whatever the umask
        write_json_atomic(tmp_path / "j" / "x.json", {"a": 1})
        with atomic_path(tmp_path / "raw.bin") as tmp:
            tmp.write_bytes(b"1")
        save_safetensors_atomic({"x": torch.zeros(2)}, tmp_path / "w.safetensors")
    assert _mode(tmp_path / "e") == 0o777 & ~mask
    files = ("e/" + MANIFEST, "e/w", "j/x.json", "raw.bin", "w.safetensors")
    for f in files:
        assert _mode(tmp_path / f) == 0o666 & ~mask, f
    assert _mode(tmp_path / "j") == 0o777 & ~mask
