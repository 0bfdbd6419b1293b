"""How services hand work to workers: a tiny interface, called only after the commit.

Services never import Celery tasks; they get a ``Dispatcher``. A failed publish is not an error
for the caller: the row is already committed and the sweeper re-publishes it.
"""

from __future__ import annotations

from typing import Literal, Protocol

JobKind = Literal["backup", "restore", "cleanup", "browse"]


class Dispatcher(Protocol):
    def publish(self, kind: JobKind, resource_id: str, *, agent_id: str | None = None) -> bool:
        """Ask a worker to run the backup/restore/cleanup ``resource_id`` (for ``agent_id``, whose
        queue it belongs to); return False if the broker could not be reached."""
        ...


class AsyncDispatcher(Protocol):
    async def publish(
        self, kind: JobKind, resource_id: str, *, agent_id: str | None = None
    ) -> bool:
        """:meth:`Dispatcher.publish` for asyncio callers (the API's hot path)."""
        ...
