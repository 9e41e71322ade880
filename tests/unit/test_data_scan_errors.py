"""Listing a dataset source that the filesystem refuses is a DataError (one line), never an OSError."""

from __future__ import annotations

from pathlib import Path

import pytest

from expctl.data.scan import DataError, list_entries


def test_a_dangling_link_in_a_source_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "b1" / "cat").mkdir(parents=True)
    (tmp_path / "b1" / "cat" / "a.txt").write_text("1,2\n")
    (tmp_path / "b1" / "cat" / "gone.txt").symlink_to(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"b1: cannot list: .*/cat/gone\.txt: No such file or directory"):
        list_entries("b1", str(tmp_path))


def test_a_source_that_is_fine_lists_its_files(tmp_path: Path) -> None:
    (tmp_path / "b1" / "cat").mkdir(parents=True)
    (tmp_path / "b1" / "cat" / "a.txt").write_text("1,2\n")
    base, entries = list_entries("b1", str(tmp_path))
    assert [e.rel for e in entries] == ["cat/a.txt"] and base.endswith("b1")
