"""Every spec reference in src/, tests/ and docs/ resolves inside the repository.

Operation ids (B1, EV3, ...) must be rows of docs/operations.md, open questions (OQ-n) must be
decided by a row of docs/decisions.md (named in its first cell), and sections (§n, §n.m) must be
headings of the digest, docs/spec/cloud-backup-v2.md. The digest itself is not scanned: it is
where these names come from. Files are found by walking the folders, not by their paths in src/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudbackup.api.controllers.not_implemented import OPERATIONS, working

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SPEC = DOCS / "spec" / "cloud-backup-v2.md"
SCANNED = ("src", "tests", "docs")
SUFFIXES = {".py", ".md", ".html", ".txt", ".toml", ".yaml", ".yml", ".ini", ".cfg"}

OPERATION_ID = re.compile(r"\b(?:ER|CF|EV|AC|[BRCAVHS])[0-9]+\b")
NOT_OPERATIONS = {"S3"}  # the object-storage protocol, not summary settings
OPEN_QUESTION = re.compile(r"\bOQ-([0-9]+)\b")
SECTION = re.compile(r"§([0-9]+(?:\.[0-9]+)*)")


def scanned_files() -> Iterator[Path]:
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in SUFFIXES and path.is_file() and SPEC.parent not in path.parents:
                yield path


def references(pattern: re.Pattern[str]) -> dict[str, list[str]]:
    """Each reference the pattern finds -> the files (relative to the root) that make it."""
    found: dict[str, list[str]] = {}
    for path in scanned_files():
        for match in pattern.finditer(path.read_text(errors="replace")):
            found.setdefault(match[1] if pattern.groups else match[0], []).append(
                str(path.relative_to(ROOT))
            )
    return found


def first_cells(markdown: Path) -> list[str]:
    return [
        line.split("|")[1] for line in markdown.read_text().splitlines() if line.startswith("|")
    ]


def unresolved(found: dict[str, list[str]], known: set[str]) -> list[str]:
    return [
        f"{ref} (in {', '.join(sorted(set(files)))})"
        for ref, files in found.items()
        if ref not in known
    ]


def test_every_operation_id_is_a_row_of_the_operation_index():
    rows = {cell.strip() for cell in first_cells(DOCS / "operations.md")}
    assert {op.id for op in OPERATIONS} <= rows
    found = {k: v for k, v in references(OPERATION_ID).items() if k not in NOT_OPERATIONS}
    assert unresolved(found, rows) == []


def test_every_open_question_is_decided_in_decisions_md():
    decided = {
        n for cell in first_cells(DOCS / "decisions.md") for n in OPEN_QUESTION.findall(cell)
    }
    assert unresolved(references(OPEN_QUESTION), decided) == []


def test_every_section_is_a_heading_of_the_digest():
    headings = set(re.findall(r"^#+ ([0-9]+(?:\.[0-9]+)*)[. ]", SPEC.read_text(), re.MULTILINE))
    assert {"1.9", "6", "14.1", "17"} <= headings
    assert unresolved(references(SECTION), headings) == []


@pytest.mark.parametrize("pattern", [OPERATION_ID, OPEN_QUESTION, SECTION], ids=["op", "oq", "§"])
def test_the_scan_sees_the_code(pattern):
    """A guard against a scan that finds nothing and so passes."""
    assert any(
        files for files in references(pattern).values() for f in files if f.startswith("src")
    )


def test_the_index_says_501_exactly_where_the_app_answers_501(client):
    rows = {
        line.split("|")[1].strip(): line
        for line in (DOCS / "operations.md").read_text().splitlines()
        if line.startswith("| ")
    }
    wrong = [
        op_id
        for op_id, works in working(client.app).items()
        if ("501: not implemented" in rows[op_id]) == works
    ]
    assert wrong == [], "update docs/operations.md's handler column for these operations"
