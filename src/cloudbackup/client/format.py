"""Numbers and times for people, shared by the CLI tables and the console pages."""

from __future__ import annotations

from datetime import UTC, datetime

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def size(value: float | int | None) -> str:
    """``1536`` -> ``1.5 KiB`` (binary units, as restic and borg print them)."""
    if value is None:
        return "-"
    amount = float(value)
    for unit in _UNITS:
        if abs(amount) < 1024 or unit == _UNITS[-1]:
            return f"{int(amount)} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def rate(bytes_per_second: float | int | None) -> str:
    if not bytes_per_second:
        return "-"
    return f"{size(bytes_per_second)}/s"


def duration(seconds: float | int | None) -> str:
    """``3725`` -> ``1h02m05s``; ``42`` -> ``42s``."""
    if seconds is None:
        return "-"
    total = max(round(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def when(value: str | None) -> str:
    """An API time as ``2026-11-27 14:02:11`` (UTC), or ``-``."""
    moment = parse_time(value)
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def elapsed(start: str | None, end: str | None, now: datetime | None = None) -> str:
    """How long a run took (or has taken so far)."""
    began = parse_time(start)
    if began is None:
        return "-"
    ended = parse_time(end) or now or datetime.now(UTC)
    return duration((ended - began).total_seconds())


def short_id(value: str | None) -> str:
    return "-" if not value else value[:8]


def ref_id(ref: object) -> str | None:
    """The ``id`` of a spec §2.1 reference object (``{"id": ..., "links": [...]}``)."""
    if isinstance(ref, dict):
        value = ref.get("id")
        return value if isinstance(value, str) else None
    return None
