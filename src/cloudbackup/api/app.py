"""The Litestar application factory: wires settings, database, dispatcher and controllers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Controller, Litestar, Request, get
from litestar.datastructures import State
from litestar.di import Provide

from cloudbackup.api.auth import TokenCache, require_token
from cloudbackup.api.controllers.agents import AgentController
from cloudbackup.api.controllers.backups import BackupController
from cloudbackup.api.controllers.configurations import ConfigurationController
from cloudbackup.api.errors import EXCEPTION_HANDLERS
from cloudbackup.api.limits import reject_nul_characters
from cloudbackup.domain.agents import AgentService
from cloudbackup.domain.backups import BackupService
from cloudbackup.domain.configurations import ConfigurationService
from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.settings import Settings, get_settings
from cloudbackup.store.db import Database

MAX_BODY_BYTES = 2 * 1024 * 1024  # the agent document is capped at 1 MB (spec §1.8)


@get("/", opt={"public": True}, sync_to_thread=False)
def versions(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Version discovery (OQ-3)."""
    base = str(request.base_url).rstrip("/")
    return {
        "versions": [
            {"id": "v2", "status": "CURRENT", "links": [{"href": f"{base}/v2/", "rel": "self"}]}
        ]
    }


# Each resource: the name handlers ask for (`NamedDependency[...]`) and how to build its service.
SERVICES: dict[str, Callable[[Database, Dispatcher, Settings], object]] = {
    "backups": lambda db, dispatcher, _: BackupService(db, dispatcher),
    "agents": lambda db, _, __: AgentService(db),
    "configurations": lambda db, _, __: ConfigurationService(db),
}
CONTROLLERS: list[type[Controller]] = [BackupController, AgentController, ConfigurationController]


def _constant(value: object) -> Provide:
    def provide() -> object:
        return value

    return Provide(provide, sync_to_thread=False, use_cache=True)


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    dispatcher: Dispatcher | None = None,
) -> Litestar:
    """Build the API. Tests pass their own database/dispatcher; production builds them here."""
    settings = settings or get_settings()
    owns_database = database is None
    db = database or Database(
        settings.resolved_database_url, connect_timeout=settings.database_connect_timeout
    )
    if dispatcher is None:
        from cloudbackup.queueing import CeleryDispatcher

        dispatcher = CeleryDispatcher.from_settings(settings)

    state = State(
        {
            "settings": settings,
            "database": db,
            "dispatcher": dispatcher,
            "token_cache": TokenCache(settings.token_cache_seconds),
        }
    )
    services = {name: build(db, dispatcher, settings) for name, build in SERVICES.items()}

    def _shutdown() -> None:
        if owns_database:
            db.dispose()

    return Litestar(
        route_handlers=[versions, *CONTROLLERS],
        guards=[require_token, reject_nul_characters],
        dependencies={name: _constant(service) for name, service in services.items()},
        exception_handlers=EXCEPTION_HANDLERS,
        state=state,
        on_shutdown=[_shutdown],
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=None,
    )
