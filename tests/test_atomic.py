"""Atomic writes: all or nothing, with the usual file permissions."""

from __future__ import annotations

import os

import pytest

from monai_fetal.atomic import atomic_path, write_text_atomic


def test_written_file_has_umask_permissions_and_no_temporary_is_left(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.json", "{}\n")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("before")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "before" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
