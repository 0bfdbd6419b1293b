"""How a restore hands its files to the writer threads: in batches, a bounded amount ahead."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Final, Generic, TypeVar

from cloudbackup.engine.snapshot import Entry

#: Bytes of files handed to the writer threads and not yet finished, at most (but one batch).
_AHEAD_BYTES: Final = 2 * 1024 * 1024
#: A batch of files for one thread: this many files, or this many bytes.
_BATCH_FILES: Final = 64
_BATCH_BYTES: Final = 512 * 1024

T = TypeVar("T")


class FileBatches(Generic[T]):
    """Hands files to the writer threads in batches: one hand-over (and its thread wake-ups)
    per batch rather than per file, which a restore of many small files would pay dearly.
    ``checkpoint`` (progress and stop checks) runs in the calling thread while it waits."""

    def __init__(
        self,
        write: Callable[[list[tuple[T, Entry]]], None],
        checkpoint: Callable[[], None],
        pool: ThreadPoolExecutor,
        workers: int,
    ) -> None:
        self.write = write
        self.checkpoint = checkpoint
        self.pool = pool
        self.workers = workers
        self.pending: deque[tuple[Future[None], int]] = deque()
        self.batch: list[tuple[T, Entry]] = []
        self.batch_bytes = 0

    def add(self, target: T, entry: Entry) -> None:
        self.batch.append((target, entry))
        self.batch_bytes += entry.size
        if len(self.batch) >= _BATCH_FILES or self.batch_bytes >= _BATCH_BYTES:
            self.hand_over()

    def hand_over(self) -> None:
        if self.batch:
            self.pending.append((self.pool.submit(self.write, self.batch), self.batch_bytes))
            self.batch, self.batch_bytes = [], 0
        # Few batches and few bytes ahead of the callbacks: a caller that throttles by
        # sleeping in on_progress still holds the restore to its pace.
        pending = self.pending
        while pending and (
            len(pending) > 2 * self.workers
            or sum(size for _f, size in pending) > _AHEAD_BYTES
            or pending[0][0].done()
        ):
            self._wait_first()

    def finish(self) -> None:
        """Hand over the last batch and wait for every file to be written."""
        self.hand_over()
        while self.pending:
            self._wait_first()

    def _wait_first(self) -> None:
        """Wait for the oldest batch to be written, reporting progress (and stops) meanwhile."""
        while True:
            try:
                self.pending[0][0].result(timeout=0.2)
            except FutureTimeout:
                self.checkpoint()
                continue
            self.pending.popleft()
            return
