"""Atomic outputs: complete or absent, with ordinary permissions."""

import os
import stat

import pytest

from util.atomic import (
    atomic_directory,
    atomic_path,
    remove_abandoned_directories,
    write_text_atomically,
)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_file_appears_only_when_complete_with_umask_permissions(tmp_path):
    target = tmp_path / "out.txt"
    previous = os.umask(0o022)
    try:
        with pytest.raises(RuntimeError):
            with atomic_path(str(target)) as temporary:
                open(temporary, "w").write("half")
                raise RuntimeError("killed mid-write")
        assert not target.exists() and os.listdir(tmp_path) == []
        write_text_atomically(str(target), "whole")
        assert target.read_text() == "whole"
        assert _mode(target) == 0o644
    finally:
        os.umask(previous)


def test_directory_replaced_as_a_whole(tmp_path):
    target = tmp_path / "tables"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(str(target)) as temporary:
            open(os.path.join(temporary, "new.txt"), "w").write("new")
            raise RuntimeError("failed build")
    assert os.listdir(target) == ["old.txt"]
    with atomic_directory(str(target)) as temporary:
        open(os.path.join(temporary, "new.txt"), "w").write("new")
    assert os.listdir(target) == ["new.txt"]
    assert sorted(os.listdir(tmp_path)) == ["tables"]
    assert _mode(target) & 0o055  # readable by others, like any new folder


def test_abandoned_staging_folders_of_one_target_are_removed_and_nothing_else(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "kept.txt").write_text("ours")
    abandoned = [tmp_path / ".model.x1.tmp", tmp_path / ".model.x2.old"]
    for folder in abandoned:
        folder.mkdir()
        (folder / "part").write_text("half")
    others = [tmp_path / ".modelling.x3.tmp", tmp_path / ".other.x4.tmp"]
    for folder in others:
        folder.mkdir()
    removed = remove_abandoned_directories(str(target))
    assert sorted(removed) == sorted(str(folder) for folder in abandoned)
    assert all(not folder.exists() for folder in abandoned)
    assert all(folder.exists() for folder in others) and (target / "kept.txt").exists()
