"""What a backup reports against the previous snapshot of its inclusions (the ransomware
guard's inputs): files whose content changed, files gone, and the plaintext and stored bytes of
the new data."""

from __future__ import annotations

import os
import random
from pathlib import Path

from cloudbackup.engine import PathItem
from factories.trees import make_text_tree


def _folder(root: Path) -> list[PathItem]:
    return [PathItem(type="folder", path=f"{root}/")]


def test_a_first_backup_has_nothing_to_compare_with(backup, tmp_path):
    make_text_tree(tmp_path / "src", files=10)
    first = backup(_folder(tmp_path / "src"))
    assert (first.previous_files, first.files_changed, first.files_deleted) == (0, 0, 0)
    assert first.new_plain_bytes == first.bytes_backed_up > 0
    assert first.new_stored_bytes < first.new_plain_bytes / 2  # words compress


def test_only_content_changes_count_and_gone_files_are_counted(backup, tmp_path):
    paths = make_text_tree(tmp_path / "src", files=20)
    backup(_folder(tmp_path / "src"))
    paths[0].write_text("rewritten")  # content changed
    paths[1].write_bytes(random.Random(1).randbytes(5000))  # content changed, incompressible
    os.utime(paths[2], ns=(1, 1))  # re-read (new mtime), same content: not a change
    paths[3].unlink()
    paths[4].unlink()
    (tmp_path / "src" / "new.txt").write_text("new file")  # added: neither changed nor gone
    second = backup(_folder(tmp_path / "src"))
    assert (second.previous_files, second.files_changed, second.files_deleted) == (20, 2, 2)
    assert second.new_plain_bytes >= 5000
    # The random file dominates the new data: it stores at about its own size.
    assert second.new_stored_bytes > 0.9 * second.new_plain_bytes


def test_an_unchanged_tree_reports_no_change_and_no_new_data(backup, tmp_path):
    make_text_tree(tmp_path / "src", files=10)
    backup(_folder(tmp_path / "src"))
    again = backup(_folder(tmp_path / "src"))
    assert (again.previous_files, again.files_changed, again.files_deleted) == (10, 0, 0)
    assert (again.new_plain_bytes, again.new_stored_bytes) == (0, 0)
