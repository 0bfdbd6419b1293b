"""Inclusion/exclusion rules: component-wise folders, exact files, trailing slashes."""

from __future__ import annotations

import pytest

from cloudbackup.engine import PathItem, Selection
from cloudbackup.engine.selection import normalize


def folder(path: str) -> dict[str, str]:
    return {"type": "folder", "path": path}


def file(path: str) -> dict[str, str]:
    return {"type": "file", "path": path}


def test_folder_exclusion_covers_its_whole_subtree() -> None:
    sel = Selection([folder("/web/")], [folder("/web/cache/")])
    assert sel.is_excluded("/web/cache")
    assert sel.is_excluded("/web/cache/")
    assert sel.is_excluded("/web/cache/a/b/c.txt")
    assert not sel.is_excluded("/web")
    assert not sel.is_excluded("/web/index.html")


def test_folder_exclusion_matches_whole_components_only() -> None:
    sel = Selection([folder("/")], [folder("/web")])
    assert sel.is_excluded("/web/x")
    assert not sel.is_excluded("/website")
    assert not sel.is_excluded("/website/x")
    assert not sel.is_excluded("/we")
    assert not sel.is_excluded("/web-old/x")


@pytest.mark.parametrize("rule", ["/web/cache", "/web/cache/", "/web//cache///", "/web/./cache"])
def test_trailing_and_doubled_slashes_are_not_significant(rule: str) -> None:
    sel = Selection([folder("/web/")], [folder(rule)])
    assert sel.is_excluded("/web/cache/x")
    assert sel.is_excluded(b"/web/cache")
    assert not sel.is_excluded("/web/cachex")


def test_file_exclusion_excludes_exactly_that_path() -> None:
    sel = Selection([folder("/web/")], [file("/web/secret.txt")])
    assert sel.is_excluded("/web/secret.txt")
    assert not sel.is_excluded("/web/secret.txt.bak")
    assert not sel.is_excluded("/web/secret")
    assert not sel.is_excluded("/web")
    # A file rule does not reach below the named path (only folder rules do).
    assert not sel.is_excluded("/web/secret.txt/child")


def test_root_folder_exclusion_excludes_everything() -> None:
    sel = Selection([folder("/data/")], [folder("/")])
    assert sel.is_excluded("/data/x")
    assert sel.roots() == []


def test_non_utf8_paths_are_compared_as_bytes() -> None:
    sel = Selection([folder("/d/")], [folder("/d/caf\udce9")])  # surrogate-escaped b"caf\xe9"
    assert sel.is_excluded(b"/d/caf\xe9/x")
    assert not sel.is_excluded("/d/café/x")  # the UTF-8 spelling is a different name


def test_roots_drop_duplicates_and_paths_inside_other_roots() -> None:
    sel = Selection(
        [folder("/a/b/"), folder("/a/"), file("/a/b/c.txt"), folder("/a-x/"), folder("/a/")], []
    )
    # "/a-x" sorts between "/a" and "/a/b" as bytes: the nesting check must not rely on that.
    assert sel.roots() == [b"/a", b"/a-x"]


def test_roots_inside_an_exclusion_are_dropped() -> None:
    sel = Selection([folder("/srv/"), folder("/var/tmp/x/")], [folder("/var/tmp/")])
    assert sel.roots() == [b"/srv"]


def test_with_excluded_folders_adds_rules_and_keeps_the_originals() -> None:
    sel = Selection([folder("/")], [file("/etc/shadow")])
    extended = sel.with_excluded_folders(["/var/vault"])
    assert extended.is_excluded("/var/vault/objects/ab")
    assert extended.is_excluded("/etc/shadow")
    assert not sel.is_excluded("/var/vault/objects/ab")


def test_accepts_structs_as_well_as_dicts() -> None:
    sel = Selection([PathItem(type="folder", path="/a/")], [PathItem(type="file", path="/a/x")])
    assert sel.is_excluded("/a/x")
    assert sel.inclusions == (PathItem(type="folder", path="/a/"),)


@pytest.mark.parametrize(
    "item",
    [
        {"type": "dir", "path": "/a"},
        {"type": "folder", "path": "relative/path"},
        {"type": "file"},
        {"path": "/a"},
    ],
)
def test_rejects_unknown_types_and_relative_paths(item: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"unknown item type|must be absolute"):
        Selection([item], [])
    with pytest.raises(ValueError, match=r"unknown item type|must be absolute"):
        Selection([folder("/a/")], [item])


def test_normalize() -> None:
    assert normalize("//a//b/./c/") == b"/a/b/c"
    assert normalize("/a/b/../c") == b"/a/c"
    assert normalize("/") == b"/"
    assert normalize(b"/x\xff/") == b"/x\xff"
    with pytest.raises(ValueError, match="must be absolute"):
        normalize("a/b")
