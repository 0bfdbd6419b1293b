"""Operator administration (not part of the v2 spec): `/v2/admin/queues` and an agent's roots,
`/v2/admin/agents/{agent_id}/roots` (which host folders its hosted execution may touch).

Only tokens of the operator project (``CLOUDBACKUP_ADMIN_PROJECT``, default ``operator``) may
use it: tenants' admin tokens must not pause the queues every tenant shares, nor widen their own
roots to other tenants' folders or the service's files. Reading needs the
read permission, changing the update permission (an admin or creator role).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from litestar import Controller, Request, get, patch, put
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.params import RawBody

from cloudbackup.api.body import convert_value, decode_json, decode_patch
from cloudbackup.api.call import Id
from cloudbackup.api.schemas.admin import RootsBody, roots_out
from cloudbackup.api.schemas.times import iso_z
from cloudbackup.domain.errors import Forbidden, InvalidInput
from cloudbackup.domain.queue_admin import (
    QueueAdministration,
    QueueChange,
    QueueInfo,
    WorkerInfo,
)
from cloudbackup.domain.roots import AgentRootsService
from cloudbackup.settings import Settings

Queues = NamedDependency[QueueAdministration]
AgentRoots = NamedDependency[AgentRootsService]
WRITABLE = ("/paused", "/concurrency")


def require_operator(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Runs after the app-wide token guard: the caller must belong to the operator project."""
    settings: Settings = connection.app.state.settings
    principal = connection.state.get("principal")
    if principal is None or principal.project_id != settings.admin_project:
        raise Forbidden(
            "Operator administration needs a token of the operator project "
            f"({settings.admin_project!r}, set by CLOUDBACKUP_ADMIN_PROJECT)."
        )


def queue_out(info: QueueInfo) -> dict[str, Any]:
    """Every member of ``info`` in its order, the two ages rounded to the millisecond."""
    out = asdict(info)
    for age in ("oldest_age_seconds", "oldest_waiting_seconds"):
        out[age] = _round(out[age])
    return out


def worker_out(info: WorkerInfo) -> dict[str, Any]:
    return {
        "hostname": info.hostname,
        "online": info.online,
        "agent_id": info.agent_id,
        "queues": info.queues,
        "concurrency": info.concurrency,
        "running": info.running,
        "pid": info.pid,
        "started_time": iso_z(info.started_at),
        "last_seen": iso_z(info.last_seen),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class AdminController(Controller):
    path = "/v2/admin"
    guards = (require_operator,)

    @get("/queues", sync_to_thread=True)
    def list_queues(self, queue_admin: Queues) -> dict[str, Any]:
        """Every queue with its depth, ages, settings and consumers, and every worker."""
        return {
            "queues": [queue_out(q) for q in queue_admin.queues()],
            "workers": [worker_out(w) for w in queue_admin.workers()],
        }

    @get("/queues/{name:str}", sync_to_thread=True)
    def get_queue(self, name: Id, queue_admin: Queues) -> dict[str, Any]:
        return queue_out(queue_admin.queue(name))

    @patch("/queues/{name:str}", sync_to_thread=True)
    def update_queue(
        self, request: Request[Any, Any, Any], name: Id, body: RawBody, queue_admin: Queues
    ) -> dict[str, Any]:
        """JSON Patch `replace` of `/paused` (boolean) and `/concurrency` (1-10000 or null)."""
        changes: dict[str, Any] = {}
        for op in decode_patch(request, body, frozenset({"replace"})):
            if op.path == "/paused":
                changes["paused"] = convert_value(op.value, bool, op.path)
            elif op.path == "/concurrency":
                value = convert_value(op.value, int | None, op.path)  # type: ignore[arg-type]
                changes["concurrency"] = value
                changes["clear_concurrency"] = value is None
            else:
                raise InvalidInput(
                    "Validation failed.",
                    [f"{op.path} cannot be changed; writable: {', '.join(WRITABLE)}."],
                )
        return queue_out(queue_admin.update(name, QueueChange(**changes)))

    @get("/workers", sync_to_thread=True)
    def list_workers(self, queue_admin: Queues) -> dict[str, Any]:
        return {"workers": [worker_out(w) for w in queue_admin.workers()]}

    @get("/agents/{agent_id:str}/roots", sync_to_thread=True)
    def get_agent_roots(self, agent_id: Id, agent_roots: AgentRoots) -> dict[str, Any]:
        """The agent's own roots (null: the fallback), what applies and what is always refused."""
        return roots_out(agent_roots.get(agent_id))

    @put("/agents/{agent_id:str}/roots", sync_to_thread=True)
    def set_agent_roots(
        self, request: Request[Any, Any, Any], agent_id: Id, body: RawBody, agent_roots: AgentRoots
    ) -> dict[str, Any]:
        """Replace the agent's roots: `{"roots": ["/srv/a", ...]}`; `null` falls back to
        CLOUDBACKUP_ALLOWED_ROOTS, `[]` allows nothing."""
        roots = decode_json(request, body, RootsBody).roots
        return roots_out(agent_roots.set(agent_id, roots))
