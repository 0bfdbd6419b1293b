"""Pack uploads behind the engine: a full pack is sent by an upload thread while the engine's
threads chunk and seal on, a bounded number at a time. Nothing may refer to a pack before it is
stored, so every other write (index, snapshot, lock, delete) and every listing waits for the
uploads in flight first, and a failed upload is raised there (the index that would have named
the pack is then never written)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

#: Uploads in flight (or waiting) at once; one more pack put waits for a free place.
IN_FLIGHT: Final = 2


class WriteBehind:
    """Puts of ``put(name, data)`` run in the background; :meth:`wait` is the barrier."""

    def __init__(self, put: Callable[[str, bytes], None], *, in_flight: int = IN_FLIGHT) -> None:
        self._put = put
        self._places = threading.BoundedSemaphore(in_flight)
        self._pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="upload")
        self._lock = threading.Lock()
        self._pending: dict[str, Future[None]] = {}
        self._failed: BaseException | None = None

    def submit(self, name: str, data: bytes) -> None:
        """Start storing ``data`` as ``name``; waits while ``IN_FLIGHT`` uploads are going."""
        self.raise_failure()
        self._places.acquire()
        try:
            future = self._pool.submit(self._put, name, data)
        except BaseException:
            self._places.release()
            raise
        with self._lock:
            self._pending[name] = future
        future.add_done_callback(lambda done: self._finished(name, done))

    def _finished(self, name: str, future: Future[None]) -> None:
        with self._lock:
            if self._pending.get(name) is future:
                del self._pending[name]
            error = future.exception()
            if error is not None and self._failed is None:
                self._failed = error
        self._places.release()

    def wait(self, name: str | None = None) -> None:
        """Wait until the upload of ``name`` (None: every upload) is done; raise the first
        failure of any upload."""
        with self._lock:
            futures = list(self._pending.values()) if name is None else [self._pending.get(name)]
        for future in futures:
            if future is not None:
                future.exception()  # waits; the failure is kept by _finished
        self.raise_failure()

    def pending(self, name: str) -> bool:
        with self._lock:
            return name in self._pending

    def raise_failure(self) -> None:
        with self._lock:
            error, self._failed = self._failed, None
        if error is not None:
            raise error

    def close(self) -> None:
        """Let the uploads in flight finish (a run that ends without its index leaves an
        unreferenced pack, which a prune collects)."""
        self._pool.shutdown(wait=True)
