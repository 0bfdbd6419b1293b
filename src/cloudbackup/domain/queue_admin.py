"""The queue administration port: what `/v2/admin/queues`, `/metrics` and `cloudbackup queues`
show and change. ``cloudbackup.queue.admin.QueueAdmin`` implements it (broker and database)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Protocol, runtime_checkable

from cloudbackup.store.worker_heartbeats import Heartbeat


@dataclass(slots=True)
class QueueInfo:
    name: str
    kind: str  # manual | scheduled | maintenance | agent | other
    agent_id: str | None
    depth: int | None  # messages in the broker (None: the broker could not be asked)
    oldest_age_seconds: float | None  # age of the oldest message waiting in the broker
    paused: bool
    concurrency: int | None
    running: int  # backups admitted from this queue and not final
    waiting: int  # backups held back by a pause or a limit
    oldest_waiting_seconds: float | None
    consumers: list[str] = field(default_factory=list)  # online workers consuming it


@dataclass(frozen=True, slots=True)
class QueueChange:
    """What a change of a queue sets; what is left ``None`` stays as it is."""

    paused: bool | None = None
    concurrency: int | None = None
    clear_concurrency: bool = False  # remove the limit (``concurrency`` stays None)


@dataclass(frozen=True, slots=True)
class WorkerInfo(Heartbeat):
    """A worker's last heartbeat (its ``queues``: this deployment's only) and whether it is
    recent enough for the worker to count as online."""

    online: bool

    @classmethod
    def of(cls, beat: Heartbeat, *, queues: list[str], online: bool) -> WorkerInfo:
        reported = {f.name: getattr(beat, f.name) for f in fields(Heartbeat)}
        return cls(**(reported | {"queues": queues}), online=online)


@runtime_checkable  # Litestar checks injected dependencies with isinstance
class QueueAdministration(Protocol):
    def queues(self, now: datetime | None = None) -> list[QueueInfo]:
        """Every queue of this deployment with its depth, ages, settings and consumers."""
        ...

    def queue(self, name: str) -> QueueInfo:
        """One queue (``NotFound`` if unknown)."""
        ...

    def workers(self, now: datetime | None = None) -> list[WorkerInfo]:
        """Every worker of this deployment that reported a heartbeat."""
        ...

    def update(self, name: str, change: QueueChange) -> QueueInfo:
        """Pause/resume a queue or change its concurrency; persisted, applied at once."""
        ...
