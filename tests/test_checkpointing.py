"""Atomic writes replace whole files and leave ordinary permissions and no debris."""

from __future__ import annotations

import os
import stat

import pytest

from vpgtrans.io.atomic import atomic_dir, atomic_path, write_text_atomic


def test_atomic_file_gets_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "run.json", "{}")
        with atomic_dir(tmp_path / "model") as folder:
            (folder / "config.json").write_text("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "run.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "run.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["run.json"]


def test_atomic_dir_replaces_the_whole_folder(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "stale.bin").write_text("x")
    with atomic_dir(tmp_path / "model") as folder:
        (folder / "config.json").write_text("{}")
    assert sorted(os.listdir(tmp_path / "model")) == ["config.json"]
    assert os.listdir(tmp_path) == ["model"]
