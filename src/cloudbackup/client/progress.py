"""Follow a running backup or restore by polling the API, and draw its progress.

Each poll reads the resource (state and counters, B3/R3) and, less often, its new events
(EV5/EV6, asc from a marker): the newest ``*_progress`` event carries ``bytes_completed`` and
``total_bytes``, which give the bar, the rate and the ETA. Without such an event (a short run) the
bar stays indeterminate and the rate is the stored bytes over the elapsed time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from cloudbackup.client import format as fmt
from cloudbackup.client.api import FINAL_STATES, ApiClient, ApiError

EVENT_POLL_SECONDS = 1.0
RATE_WINDOW_SECONDS = 30.0
RESTORE_FINAL_STATES = frozenset({"completed", "completed_with_errors", "failed", "stopped"})


@dataclass
class Snapshot:
    """What one poll knows about a run."""

    kind: str  # "backups" or "restores"
    body: dict[str, Any]
    bytes_completed: int | None = None
    total_bytes: int | None = None
    rate: float | None = None  # bytes per second
    eta: float | None = None  # seconds

    @property
    def state(self) -> str:
        return str(self.body.get("state", "?"))

    @property
    def final(self) -> bool:
        finals = FINAL_STATES if self.kind == "backups" else RESTORE_FINAL_STATES
        return self.state in finals


@dataclass
class Watcher:
    """Polls one run; ``poll()`` returns a fresh :class:`Snapshot`."""

    api: ApiClient
    kind: str
    run_id: str
    clock: Callable[[], float] = time.monotonic
    _marker: str | None = None
    _next_events: float = 0.0
    _samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))
    _progress: dict[str, Any] | None = None
    events_supported: bool = True

    def poll(self) -> Snapshot:
        body = (
            self.api.get_backup(self.run_id)
            if self.kind == "backups"
            else self.api.get_restore(self.run_id)
        )
        now = self.clock()
        if self.events_supported and now >= self._next_events:
            self._next_events = now + EVENT_POLL_SECONDS
            self._read_events()
        snap = Snapshot(self.kind, body)
        if self._progress is not None and body.get("state") in ("in_progress", "stop_requested"):
            snap.bytes_completed = _int(self._progress.get("bytes_completed"))
            snap.total_bytes = _int(self._progress.get("total_bytes"))
        snap.rate, measured = self._rate(body)
        known = snap.total_bytes is not None and snap.bytes_completed is not None
        if snap.rate and measured and known:
            snap.eta = max((snap.total_bytes or 0) - (snap.bytes_completed or 0), 0) / snap.rate
        return snap

    def _read_events(self) -> None:
        while True:
            try:
                page = self.api.list_events(
                    (self.kind, self.run_id), marker=self._marker, limit=100, sort_dir="asc"
                )
            except ApiError as exc:
                if exc.missing_endpoint:
                    self.events_supported = False  # e.g. a server without EV6 yet
                    return
                raise
            events = page.get("events") or []
            for event in events:
                self._marker = str(event.get("id"))
                if is_progress_event(event):
                    self._progress = event
                    moment = fmt.parse_time(event.get("time"))
                    done = _int(event.get("bytes_completed"))
                    if moment is not None and done is not None:
                        self._samples.append((moment.timestamp(), done))
            if len(events) < 100:
                return

    def _rate(self, body: dict[str, Any]) -> tuple[float | None, bool]:
        """Bytes per second, and whether it measures progress (else: stored bytes so far)."""
        if len(self._samples) >= 2:
            newest_t, newest_b = self._samples[-1]
            window = [s for s in self._samples if newest_t - s[0] <= RATE_WINDOW_SECONDS]
            oldest_t, oldest_b = window[0] if len(window) >= 2 else self._samples[0]
            if newest_t > oldest_t:
                return (newest_b - oldest_b) / (newest_t - oldest_t), True
        started = fmt.parse_time(body.get("started_time"))
        stored = _stored_bytes(body)
        if started is None or not stored:
            return None, False
        seconds = (datetime.now(UTC) - started).total_seconds()
        return (stored / seconds if seconds > 0 else None), False


def is_progress_event(event: dict[str, Any]) -> bool:
    """``backup_progress`` and the like (byte counts), not the ``backup_in_progress`` state."""
    name = str(event.get("event", ""))
    return name.endswith("_progress") and not name.endswith("_in_progress")


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _stored_bytes(body: dict[str, Any]) -> int:
    return int(body.get("bytes_backed_up") or body.get("bytes_restored") or 0)


def counters(body: dict[str, Any]) -> str:
    """``40 files (7.4 MiB) searched, 12 files (3.1 MiB) stored`` (or restored)."""
    if "files_searched" in body:
        return (
            f"{body.get('files_searched', 0)} files ({fmt.size(body.get('bytes_searched'))}) "
            f"searched, {body.get('files_backed_up', 0)} files "
            f"({fmt.size(body.get('bytes_backed_up'))}) stored"
        )
    return (
        f"{body.get('files_restored', 0)} files ({fmt.size(body.get('bytes_restored'))}) restored"
    )


def render(snap: Snapshot, width: int = 28) -> RenderableType:
    """One live frame: state, bar, percentage, counters, rate, ETA."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    total, done = snap.total_bytes, snap.bytes_completed
    known = total is not None and done is not None and total > 0
    bar = ProgressBar(
        total=float(total) if known and total else None,
        completed=float(done or 0),
        width=width,
        pulse=not known,
        animation_time=time.monotonic(),
    )
    percent = f"{100 * (done or 0) / (total or 1):3.0f}%" if known else "  …"
    grid.add_row(Text(f"{snap.state:<14}", style=_style(snap.state)), bar, Text(percent))
    details = [counters(snap.body)]
    if snap.rate:
        details.append(fmt.rate(snap.rate))
    if snap.eta is not None and not snap.final:
        details.append(f"ETA {fmt.duration(snap.eta)}")
    return Group(grid, Text("  " + " · ".join(details), style="dim"))


def _style(state: str) -> str:
    if state in ("completed",):
        return "bold green"
    if state in ("completed_with_errors", "stop_requested", "stopped", "skipped", "missed"):
        return "bold yellow"
    if state == "failed":
        return "bold red"
    return "bold cyan"


def summary(kind: str, body: dict[str, Any]) -> str:
    """The closing line: ``backup 0d95d699 completed in 12s: ...``."""
    noun = "backup" if kind == "backups" else "restore"
    took = fmt.elapsed(body.get("started_time"), body.get("ended_time"))
    line = f"{noun} {body.get('id')} {body.get('state')} in {took}: {counters(body)}"
    bps = body.get("bandwidth_avg_bps")
    return f"{line}, {fmt.rate(bps)}" if bps else line
