"""Reads a restore will make, fetched ahead: the chunks of the selected files in the order the
engine reads them, coalesced into few ranged GETs of their packs (neighbouring chunks of a pack
travel in one request) and kept a bounded amount ahead of the engine by a few threads. The
engine's writer threads then find nearly every chunk here instead of paying a round trip each.

A read that is not planned, or whose request failed, is sent alone, so an error surfaces
exactly as without read-ahead. The planner reads the snapshot's tree itself; the engine's reads
of the same tree chunks are answered from what the planner read (``KEEP_READS``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

log = logging.getLogger("cloudbackup.agent")

#: One planned read: object name, offset, length.
Read = tuple[str, int, int]

#: Reads are planned in windows of this many bytes (the first one smaller, to start soon):
#: within a window the reads of each pack are sorted and neighbours share a request, since a
#: pack's chunks are not in walk order (the backup's threads fill packs side by side).
WINDOW_BYTES: Final = 16 * 1024 * 1024
FIRST_WINDOW_BYTES: Final = 2 * 1024 * 1024
#: A request carries at most this many bytes (or one chunk, if larger).
SEGMENT_BYTES: Final = 8 * 1024 * 1024
#: Chunks of a pack at most this far apart share a request (the gap travels too).
GAP_BYTES: Final = 256 * 1024
#: Bytes fetched (or being fetched) for windows after the one last read from, at most (but one
#: window).
AHEAD_BYTES: Final = 40 * 1024 * 1024
#: Requests in flight at once.
FETCHERS: Final = 3
#: How long a read not (yet) planned waits for a planner held back by ``AHEAD_BYTES`` (which
#: this read may just have lifted), and for a planner still working out its next window.
HELD_WAIT_SECONDS: Final = 0.05
PLAN_WAIT_SECONDS: Final = 0.5
#: The planner's own reads (the tree) kept for the engine's same reads: at most this many.
KEEP_READS: Final = 16


class _Segment:
    """One request: ``[offset, end)`` of object ``name`` for window ``window``, holding
    ``pending`` planned reads; ``first`` orders the requests of a window by first use."""

    __slots__ = ("end", "first", "future", "name", "offset", "pending", "window")

    def __init__(self, window: int, name: str, offset: int, end: int, first: int) -> None:
        self.window = window
        self.name = name
        self.offset = offset
        self.end = end
        self.first = first
        self.pending = 1
        self.future: Future[bytes] | None = None

    @property
    def size(self) -> int:
        return self.end - self.offset

    def covers(self, name: str, offset: int, length: int) -> bool:
        return name == self.name and self.offset <= offset and offset + length <= self.end


def coalesce(
    window: int, reads: list[Read], *, segment_bytes: int, gap_bytes: int
) -> list[_Segment]:
    """The requests for one window's reads, in order of first use."""
    by_object: dict[str, list[tuple[int, int, int]]] = {}
    for position, (name, offset, length) in enumerate(reads):
        by_object.setdefault(name, []).append((offset, offset + length, position))
    segments: list[_Segment] = []
    for name, ranges in by_object.items():
        ranges.sort()
        current: _Segment | None = None
        for start, end, position in ranges:
            if (
                current is not None
                and start <= current.end + gap_bytes
                and end - current.offset <= segment_bytes
            ):
                current.end = max(current.end, end)
                current.first = min(current.first, position)
                current.pending += 1
                continue
            current = _Segment(window, name, start, end, position)
            segments.append(current)
    segments.sort(key=lambda s: s.first)
    return segments


@dataclass(frozen=True, slots=True)
class ReadAheadSizes:
    """How a :class:`ReadAhead` plans and fetches (the defaults are documented above)."""

    window_bytes: int = WINDOW_BYTES
    first_window_bytes: int = FIRST_WINDOW_BYTES
    segment_bytes: int = SEGMENT_BYTES
    gap_bytes: int = GAP_BYTES
    ahead_bytes: int = AHEAD_BYTES
    fetchers: int = FETCHERS


class ReadAhead:
    """Fetches ``reads`` (consumed by a planning thread as it goes, so a huge restore is never
    planned whole) ahead of :meth:`get`; ``fetch(name, offset, length)`` is one ranged read."""

    def __init__(
        self,
        fetch: Callable[[str, int, int], bytes],
        reads: Iterable[Read],
        sizes: ReadAheadSizes = ReadAheadSizes(),
    ) -> None:
        self._fetch = fetch
        self._sizes = sizes
        self._cond = threading.Condition()
        self._live: list[_Segment] = []  # fetched or being fetched, in plan order
        self._served = -1  # the latest window a read was served from
        self._closed = False
        self._held = False  # the planner waits for the reads to catch up
        self._windows = 0  # windows sent so far
        self._planned = False  # the planner is done (or gave up)
        self._kept: dict[Read, bytes] = {}  # the planner's own reads, for the engine's
        self.requests = 0  # requests sent (for tests and logs)
        self._pool = ThreadPoolExecutor(max_workers=sizes.fetchers, thread_name_prefix="read-ahead")
        self._planner = threading.Thread(
            target=self._plan, args=(iter(reads),), name="read-ahead-plan", daemon=True
        )
        self._planner.start()

    # -- planning (its own thread) ------------------------------------------------------------
    def _plan(self, reads: Iterator[Read]) -> None:
        try:
            window: list[Read] = []
            size = 0
            limit = self._sizes.first_window_bytes
            number = 0
            for read in reads:
                if self._closed:
                    return
                window.append(read)
                size += read[2]
                if size >= limit:
                    self._submit(number, window)
                    window, size, limit, number = [], 0, self._sizes.window_bytes, number + 1
            if window:
                self._submit(number, window)
        except Exception:  # the engine meets the same problem and reports it
            log.debug("read-ahead stopped planning", exc_info=True)
        finally:
            with self._cond:
                self._planned = True
                self._cond.notify_all()

    def _submit(self, number: int, reads: list[Read]) -> None:
        segments = coalesce(
            number, reads, segment_bytes=self._sizes.segment_bytes, gap_bytes=self._sizes.gap_bytes
        )
        size = sum(s.size for s in segments)
        with self._cond:
            self._held = True
            while not self._closed and self._over_bound(size):
                self._cond.wait()
            self._held = False
            if self._closed:
                return
            for segment in segments:
                segment.future = self._pool.submit(
                    self._fetch, segment.name, segment.offset, segment.size
                )
            self.requests += len(segments)
            self._live.extend(segments)
            self._windows += 1
            self._cond.notify_all()

    def _over_bound(self, size: int) -> bool:
        """Whether ``size`` more bytes would go past the bound (one window always may)."""
        ahead = self._ahead()
        return ahead > 0 and ahead + size > self._sizes.ahead_bytes

    def _ahead(self) -> int:
        """Bytes of live windows after the last one read from (the caller holds the lock)."""
        return sum(s.size for s in self._live if s.window > self._served)

    # -- reading (the engine's threads) ---------------------------------------------------------
    def get(self, name: str, offset: int, length: int) -> bytes:
        """The read's bytes: from its planned request, or else read alone."""
        read = (name, offset, length)
        planner = threading.current_thread() is self._planner
        with self._cond:
            segment = self._find(read)
            if segment is None and not planner:
                segment = self._wait_for_plan(read)
            kept = self._kept.pop(read, None) if segment is None else None
        if kept is not None:
            return kept
        if segment is None or segment.future is None:
            data = self._fetch(name, offset, length)
            if planner:
                self._keep(read, data)
            return data
        try:
            whole: bytes | None = segment.future.result()
        except (Exception, CancelledError):
            whole = None  # read alone below, so the caller sees the error as it is
        with self._cond:
            segment.pending -= 1
            self._served = max(self._served, segment.window)
            # A window before the previous one still expecting reads: files the engine
            # skipped (they exist, or failed); a lagging thread reads those alone.
            self._live = [s for s in self._live if s.pending > 0 and s.window >= self._served - 1]
            self._cond.notify_all()
        if whole is None:
            return self._fetch(name, offset, length)
        start = offset - segment.offset
        return whole[start : start + length]

    def _find(self, read: Read) -> _Segment | None:
        """The live request holding the read (the caller holds the lock)."""
        return next((s for s in self._live if s.pending > 0 and s.covers(*read)), None)

    def _wait_for_plan(self, read: Read) -> _Segment | None:
        """A read found in no request, while the planner may still send it (or read it for
        the tree): wait a little for its next window (the caller holds the lock)."""
        if read in self._kept or self._planned or self._closed:
            return None
        if self._held:
            self._cond.notify_all()
            self._cond.wait(HELD_WAIT_SECONDS)
            return self._find(read)
        windows = self._windows
        self._cond.wait_for(
            lambda: self._windows != windows or self._planned or self._held or self._closed,
            PLAN_WAIT_SECONDS,
        )
        return self._find(read)

    def _keep(self, read: Read, data: bytes) -> None:
        with self._cond:
            while len(self._kept) >= KEEP_READS:
                del self._kept[next(iter(self._kept))]
            self._kept[read] = data

    def close(self) -> None:
        """Stop planning and fetching; what is in flight is dropped."""
        with self._cond:
            self._closed = True
            self._live = []
            self._kept = {}
            self._cond.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)
