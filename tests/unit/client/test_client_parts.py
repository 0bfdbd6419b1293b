"""The client's pure parts: words to schedules and paths, the config file, the progress frame."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cloudbackup.cli import app
from cloudbackup.client import format as fmt
from cloudbackup.client.config import ConfigError, read_file, resolve, write_file
from cloudbackup.client.drafts import (
    DraftError,
    path_item,
    path_text,
    schedule_from_words,
    schedule_words,
)
from cloudbackup.client.progress import Snapshot, render, summary


@pytest.mark.parametrize(
    ("words", "rule"),
    [
        ("hourly", "RRULE:FREQ=HOURLY;INTERVAL=1"),
        ("every 2 hours", "RRULE:FREQ=HOURLY;INTERVAL=2"),
        ("daily 02:30", "RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=2;BYMINUTE=30"),
        ("daily at 14:00", "RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=14;BYMINUTE=0"),
        ("every 3 days 7:05", "RRULE:FREQ=DAILY;INTERVAL=3;BYHOUR=7;BYMINUTE=5"),
        ("weekly thu 14:00", "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=TH;BYHOUR=14;BYMINUTE=0"),
        (
            "Weekly on sun,MON at 23:59",
            "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=MO,SU;BYHOUR=23;BYMINUTE=59",
        ),
        ("RRULE:FREQ=HOURLY;INTERVAL=6", "RRULE:FREQ=HOURLY;INTERVAL=6"),
    ],
)
def test_schedule_words_spell_the_specs_rrules(words, rule):
    assert schedule_from_words(words, "US/Central") == {
        "recurrence": [rule],
        "time_zone": "US/Central",
    }


@pytest.mark.parametrize("words", ["none", "", "manual", None])
def test_no_schedule(words):
    assert schedule_from_words(words, "UTC") is None


@pytest.mark.parametrize(
    ("words", "hint"),
    [
        ("daily", "need a time as HH:MM"),
        ("daily 25:00", "need a time as HH:MM"),
        ("weekly xyz 10:00", "'xyz' is not a day of the week"),
        ("monthly", "write none | hourly"),
        ("every 0 hours", "the interval must be 1 or more"),
    ],
)
def test_bad_schedule_words_say_what_to_write(words, hint):
    with pytest.raises(DraftError, match=hint):
        schedule_from_words(words, "UTC")


def test_schedules_read_back_in_words():
    assert schedule_words(None) == "manual only"
    assert schedule_words({"recurrence": ["RRULE:FREQ=HOURLY;INTERVAL=2"], "time_zone": "UTC"}) == (
        "every 2 hours (UTC)"
    )
    rule = "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=TH;BYHOUR=14;BYMINUTE=0"
    assert schedule_words({"recurrence": [rule], "time_zone": "US/Central"}) == (
        "weekly on Thu at 14:00 (US/Central)"
    )


@pytest.mark.parametrize(
    ("rule", "zone", "start", "words"),
    [
        ("RRULE:FREQ=HOURLY;INTERVAL=1;BYMINUTE=15", "UTC", None, "hourly at :15 (UTC)"),
        ("RRULE:FREQ=HOURLY;INTERVAL=1", "UTC", None, "hourly (UTC)"),
        # No BYMINUTE: the series keeps the anchor's minute, read in the schedule's zone.
        (
            "RRULE:FREQ=HOURLY;INTERVAL=2",
            "Asia/Kolkata",
            "2026-01-05T10:40:00Z",
            "every 2 hours at :10 (Asia/Kolkata)",
        ),
        (
            "RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=2;BYMINUTE=30",
            "Europe/Paris",
            "2026-01-05T10:40:00Z",
            "daily at 02:30 (Europe/Paris)",
        ),
        (
            "RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=2",
            "UTC",
            "2014-08-05T18:22:21Z",
            "daily at 02:22 (UTC)",
        ),
        (
            "RRULE:FREQ=DAILY;INTERVAL=3",
            "Europe/Paris",
            "2026-01-05T18:22:21Z",
            "every 3 days at 19:22 (Europe/Paris)",
        ),
        (
            "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=MO;BYHOUR=2;BYMINUTE=30",
            "UTC",
            None,
            "weekly on Mon at 02:30 (UTC)",
        ),
    ],
)
def test_schedules_in_words_say_the_minute_and_hour_the_rule_runs_at(rule, zone, start, words):
    schedule = {"recurrence": [rule], "time_zone": zone}
    if start is not None:
        schedule["start"] = start
    assert schedule_words(schedule) == words


def test_paths_are_folders_unless_marked_file():
    assert path_item("/home/me/docs") == {"type": "folder", "path": "/home/me/docs/"}
    assert path_item(" /web/ ") == {"type": "folder", "path": "/web/"}
    assert path_item("file:/etc/hosts") == {"type": "file", "path": "/etc/hosts"}
    assert path_item("folder:/srv") == {"type": "folder", "path": "/srv/"}
    for text in ("/home/me/docs/", "file:/etc/hosts"):
        assert path_text(path_item(text)) == text


def test_config_file_fills_what_flags_and_variables_leave_out(tmp_path, monkeypatch):
    path = tmp_path / "client.toml"
    monkeypatch.setenv("CLOUDBACKUP_CLIENT_CONFIG", str(path))
    write_file(path, {"url": "http://backup.example:8000", "token": 'a"b', "project": "110011"})
    assert read_file(path) == {
        "url": "http://backup.example:8000",
        "token": 'a"b',
        "project": "110011",
    }
    config = resolve(None, "flag-token", None)
    assert (config.url, config.token, config.project) == (
        "http://backup.example:8000",
        "flag-token",
        "110011",
    )

    path.write_text('url = "x"\npassword = "y"\n')
    with pytest.raises(ConfigError, match="unknown key"):
        resolve(None, None, None)
    path.write_text("url = \n")
    with pytest.raises(ConfigError, match="cannot read"):
        resolve(None, None, None)
    path.unlink()
    assert resolve(None, "t", "p").url == "http://127.0.0.1:8000"


def _text(renderable) -> str:
    console = Console(file=io.StringIO(), width=120, force_terminal=True, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_progress_frame_shows_state_bar_counters_rate_and_eta():
    body = {
        "state": "in_progress",
        "files_searched": 40,
        "bytes_searched": 4 * 1024**2,
        "files_backed_up": 12,
        "bytes_backed_up": 1024**2,
    }
    frame = _text(render(Snapshot("backups", body, 1024**2, 4 * 1024**2, 512 * 1024, 6.0)))
    assert "in_progress" in frame and " 25%" in frame
    assert "40 files (4.0 MiB) searched, 12 files (1.0 MiB) stored" in frame
    assert "512.0 KiB/s" in frame and "ETA 6s" in frame

    unknown = _text(render(Snapshot("backups", {**body, "state": "preparing"})))
    assert "preparing" in unknown and "%" not in unknown and "ETA" not in unknown


def test_summary_line():
    body = {
        "id": "b1",
        "state": "completed",
        "started_time": "2026-01-01T00:00:00Z",
        "ended_time": "2026-01-01T00:01:05.5Z",
        "files_searched": 3,
        "bytes_searched": 2048,
        "files_backed_up": 1,
        "bytes_backed_up": 1024,
        "bandwidth_avg_bps": 100,
    }
    assert summary("backups", body) == (
        "backup b1 completed in 1m06s: 3 files (2.0 KiB) searched, 1 files (1.0 KiB) stored, "
        "100 B/s"
    )
    assert fmt.size(0) == "0 B" and fmt.size(1536) == "1.5 KiB" and fmt.duration(3725) == "1h02m05s"


def test_shell_completion_offers_the_commands():
    result = CliRunner().invoke(
        app,
        [],
        env={
            "_CLOUDBACKUP_COMPLETE": "complete_bash",
            "COMP_WORDS": "cloudbackup backups s",
            "COMP_CWORD": "2",
        },
        prog_name="cloudbackup",
    )
    assert set(result.output.split()) >= {"start", "stop", "show"}
