"""How services hand work to workers: a tiny interface, called only after the commit.

Services never import Celery tasks; they get a ``Dispatcher``. A failed publish is not an error
for the caller: the row is already committed and the sweeper re-publishes it.
"""

from __future__ import annotations

from typing import Literal, Protocol

# "webhook": send one webhook delivery (its id, a digit string); no agent, no run.
JobKind = Literal["backup", "restore", "cleanup", "browse", "logfile", "webhook", "drill"]


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


class QueueRouter(Protocol):
    """What the admission gate around one delivered backup needs of the queues."""

    def delivery_queue(self, delivered_to: str | None) -> str:
        """The queue a delivery came from (``delivered_to``, or the manual queue if unknown)."""
        ...

    def own_queue(self, queue: str, agent_id: str | None) -> str | None:
        """The agent's own queue, in ``queue``'s lane, when work for ``agent_id`` came through
        shared ``queue`` but the agent is pinned now; otherwise None."""
        ...

    def publish_to(
        self, queue: str, kind: JobKind, resource_id: str, agent_id: str | None = None
    ) -> bool:
        """Publish to the named ``queue``; False if the broker could not be reached."""
        ...
