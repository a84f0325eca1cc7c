"""Atomic checkpoint folders: a failed save keeps the previous one; corruption is reported by file."""
import os

import numpy as np
import pytest

from retrograd.io import (CheckpointError, atomic_directory, load_tree, resolve_directory, save_tree,
                          verify_directory)
from retrograd.io import checkpoint as ck


def _write(path, value):
    with atomic_directory(path) as tmp:
        save_tree(tmp, "state", {"value": value, "arr": np.full(3, value, np.float32), "t": (1, 2)})
        (tmp / "notes.txt").write_text(f"v{value}")


def test_roundtrip_and_manifest(tmp_path):
    _write(tmp_path / "ck", 1)
    m = verify_directory(tmp_path / "ck")
    assert set(m["files"]) == {"state.json", "state.safetensors", "notes.txt"}
    st = load_tree(tmp_path / "ck", "state")
    assert st["value"] == 1 and st["t"] == (1, 2)
    np.testing.assert_array_equal(st["arr"], np.ones(3, np.float32))
    _write(tmp_path / "ck", 2)  # overwrite in place
    assert load_tree(tmp_path / "ck", "state")["value"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temp or old folders left


def test_failure_mid_save_keeps_previous(tmp_path):
    _write(tmp_path / "ck", 1)
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_directory(tmp_path / "ck") as tmp:
            save_tree(tmp, "state", {"value": 2, "arr": np.zeros(3)})
            raise RuntimeError("disk full")
    verify_directory(tmp_path / "ck")
    assert load_tree(tmp_path / "ck", "state")["value"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_failure_during_final_rename_restores_previous(tmp_path, monkeypatch):
    _write(tmp_path / "ck", 1)
    real_rename = os.rename
    calls = []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the new folder's rename into place
            raise OSError("power cut")
        return real_rename(src, dst)

    monkeypatch.setattr(ck.os, "rename", flaky)
    with pytest.raises(OSError, match="power cut"):
        _write(tmp_path / "ck", 2)
    monkeypatch.setattr(ck.os, "rename", real_rename)
    assert load_tree(tmp_path / "ck", "state")["value"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_interrupted_swap_falls_back_to_old(tmp_path):
    _write(tmp_path / "ck", 1)
    os.rename(tmp_path / "ck", tmp_path / ".ck.old-1234abcd")  # as if killed between the two renames
    with pytest.warns(RuntimeWarning, match="interrupted save"):
        folder = resolve_directory(tmp_path / "ck")
    assert load_tree(folder, "state")["value"] == 1
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        resolve_directory(tmp_path / "other")


def test_truncated_file_is_named(tmp_path):
    _write(tmp_path / "ck", 1)
    f = tmp_path / "ck" / "state.safetensors"
    f.write_bytes(f.read_bytes()[:-5])
    with pytest.raises(CheckpointError, match=r"state\.safetensors: truncated or corrupted: \d+ bytes"):
        verify_directory(tmp_path / "ck")


def test_corrupted_file_is_named(tmp_path):
    _write(tmp_path / "ck", 1)
    f = tmp_path / "ck" / "state.json"
    data = bytearray(f.read_bytes())
    data[5] ^= 0x20
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"state\.json: corrupted: its SHA-256"):
        verify_directory(tmp_path / "ck")


def test_missing_manifest_and_file(tmp_path):
    _write(tmp_path / "ck", 1)
    (tmp_path / "ck" / "notes.txt").unlink()
    with pytest.raises(CheckpointError, match="notes.txt: missing"):
        verify_directory(tmp_path / "ck")
    (tmp_path / "ck" / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest.json: missing"):
        verify_directory(tmp_path / "ck")
