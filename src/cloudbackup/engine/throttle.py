"""A read throttle: holds a backup's reads at a byte rate."""

from __future__ import annotations

import time


class Throttle:
    """Sleeps so that bytes read since the first read never exceed ``max_bps`` per second."""

    def __init__(self, max_bps: int) -> None:
        self.max_bps = max_bps
        self._start: float | None = None
        self._consumed = 0

    def consume(self, nbytes: int) -> None:
        if self.max_bps <= 0:
            return
        now = time.monotonic()
        if self._start is None:
            self._start = now
        self._consumed += nbytes
        ahead = self._start + self._consumed / self.max_bps - now
        if ahead > 0:
            time.sleep(ahead)
