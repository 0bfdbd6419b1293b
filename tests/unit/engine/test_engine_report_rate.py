"""How often a backup calls its progress and stop callbacks: bounded by time, not by the number
of files (each call costs the service's run a clock read, a lock and look-ups; per entry, that
was a third of an unchanged re-run of many small files)."""

from __future__ import annotations

from pathlib import Path

from cloudbackup.engine import BackupProgress, BackupResult, Vault, run_backup
from cloudbackup.engine.walk import TALLY_EVERY


def small_tree(root: Path, files: int) -> list[dict[str, str]]:
    for n in range(files):
        folder = root / f"d{n // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{n:05d}.txt").write_bytes(f"file {n}\n".encode() * 20)
    return [{"type": "folder", "path": f"{root}/"}]


def calls_of(
    vault: Vault, inclusions: list[dict[str, str]], **kwargs: float
) -> tuple[list[BackupProgress], int, list[str], BackupResult]:
    reports: list[BackupProgress] = []
    events: list[str] = []
    stops = 0

    def should_stop() -> bool:
        nonlocal stops
        stops += 1
        return False

    def on_progress(progress: BackupProgress) -> None:
        reports.append(progress)
        events.append("progress")

    result = run_backup(
        vault,
        inclusions,
        [],
        on_progress=on_progress,
        should_stop=should_stop,
        on_phase=events.append,
        **kwargs,
    )
    return reports, stops, events, result


def test_the_callbacks_run_as_often_for_many_files_as_for_few(vault: Vault, tmp_path: Path) -> None:
    counts = []
    for files in (30, 600):
        inclusions = small_tree(tmp_path / f"src{files}", files)
        for _ in range(2):  # a first backup, then an unchanged re-run
            reports, stops, _, result = calls_of(vault, inclusions, report_seconds=3600.0)
            counts.append((len(reports), stops))
            last = reports[-1]
            # Fewer calls, the same truth: the last report is the run's result.
            assert (last.files_searched, last.bytes_searched) == (files, result.bytes_searched)
            assert last.bytes_completed == last.total_bytes == result.bytes_searched
            assert last.files_backed_up == result.files_backed_up
    # No call per entry: the same few (first entry, end of the scan, end of storing) whatever
    # the number of files.
    assert len(set(counts)) == 1
    assert counts[0][0] <= 4 and counts[0][1] <= 4


def test_the_scans_totals_are_reported_before_storing_starts(vault: Vault, tmp_path: Path) -> None:
    inclusions = small_tree(tmp_path / "src", 250)
    reports, _, events, _ = calls_of(vault, inclusions, report_seconds=3600.0)
    before_store = events.index("in_progress")
    scanned = reports[events[:before_store].count("progress") - 1]
    assert scanned.files_searched == 250
    assert scanned.total_bytes == sum(
        p.stat().st_size for p in (tmp_path / "src").rglob("*") if p.is_file()
    )


def test_with_no_interval_every_entry_reports(vault: Vault, tmp_path: Path) -> None:
    inclusions = small_tree(tmp_path / "src", 40)
    reports, stops, _, _ = calls_of(vault, inclusions, report_seconds=0.0)
    # 40 files in one folder, each seen by the store (the folders too); the scan only counts
    # files, reporting at each folder and at its end.
    assert len(reports) == stops == (2 + 1) + (2 + 40 + 1)


def test_a_scan_reports_within_a_folder_of_many_files(vault: Vault, tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    for n in range(3 * TALLY_EVERY + 5):
        (root / f"f{n:05d}").write_bytes(b"x" * (n % 7))
    events: list[str] = []
    reports: list[int] = []

    def on_progress(progress: BackupProgress) -> None:
        if "in_progress" not in events:
            reports.append(progress.files_searched)

    run_backup(
        vault,
        [{"type": "folder", "path": f"{root}/"}],
        [],
        on_progress=on_progress,
        should_stop=lambda: False,
        on_phase=events.append,
        report_seconds=0.0,
    )
    # One folder: the tally shows every TALLY_EVERY files, then the scan's totals.
    assert reports == [0, TALLY_EVERY, 2 * TALLY_EVERY, 3 * TALLY_EVERY, 3 * TALLY_EVERY + 5]
