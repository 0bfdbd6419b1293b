"""The API's Litestar application: its services and controllers over the collaborators it is
given (database, dispatchers, queue administration, broker ping). ``cloudbackup.server`` builds
those and mounts the console beside it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from litestar import Controller, Litestar, Request, get
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.types import ControllerRouterHandler

from cloudbackup.api.auth import TokenCache, require_token
from cloudbackup.api.call import CALL
from cloudbackup.api.controllers.activities import ActivityController
from cloudbackup.api.controllers.admin import AdminController
from cloudbackup.api.controllers.agents import AgentController
from cloudbackup.api.controllers.anomalies import AnomalyController
from cloudbackup.api.controllers.backups import BackupController
from cloudbackup.api.controllers.browse import BrowseController
from cloudbackup.api.controllers.cleanups import CleanupController
from cloudbackup.api.controllers.configurations import ConfigurationController
from cloudbackup.api.controllers.drill_schedules import DrillScheduleController
from cloudbackup.api.controllers.drills import BackupDrillController, DrillController
from cloudbackup.api.controllers.events import (
    AgentEventController,
    ConfigurationEventController,
    ProjectEventController,
)
from cloudbackup.api.controllers.health import HealthController
from cloudbackup.api.controllers.logfiles import LogContentController, LogfileController
from cloudbackup.api.controllers.not_implemented import register_not_implemented
from cloudbackup.api.controllers.remote_agents import RemoteAgentController
from cloudbackup.api.controllers.restores import RestoreController
from cloudbackup.api.controllers.settings import SummarySettingsController
from cloudbackup.api.controllers.vault import VaultController
from cloudbackup.api.controllers.webhooks import WebhookController
from cloudbackup.api.errors import EXCEPTION_HANDLERS
from cloudbackup.api.forwarded import ForwardedHeaders, parse_networks
from cloudbackup.api.idempotency import idempotency_middleware
from cloudbackup.api.limits import (
    MAX_BODY_BYTES,
    limits_middleware,
    reject_nul_characters,
    reject_unknown_query,
)
from cloudbackup.api.metrics import metrics, observe
from cloudbackup.api.openapi import openapi_config
from cloudbackup.api.paging import PAGING
from cloudbackup.domain.activities import ActivityService
from cloudbackup.domain.agent_channel import AgentChannel, AgentChannelReader, ChannelService
from cloudbackup.domain.agent_document import AgentDocumentService
from cloudbackup.domain.agents import AgentService, AgentTokenService
from cloudbackup.domain.anomalies import AnomalyService
from cloudbackup.domain.backups import BackupService, BackupStarter, stored_snapshots
from cloudbackup.domain.browse import BrowseService
from cloudbackup.domain.cleanups import CleanupService
from cloudbackup.domain.configurations import ConfigurationService
from cloudbackup.domain.dispatch import AsyncDispatcher, Dispatcher
from cloudbackup.domain.drill_schedules import DrillScheduleService
from cloudbackup.domain.drills import DrillService
from cloudbackup.domain.event_stream import EventStreamService
from cloudbackup.domain.health import BrokerPing, HealthService
from cloudbackup.domain.logfiles import LogfileService, log_store
from cloudbackup.domain.queue_admin import QueueAdministration
from cloudbackup.domain.restores import RestoreService
from cloudbackup.domain.roots import AgentRootsService, RootsPolicy
from cloudbackup.domain.summaries import SummaryService
from cloudbackup.domain.vault_objects import VaultObjectService
from cloudbackup.domain.vault_requests import VaultRequestService
from cloudbackup.domain.vaults import VaultService
from cloudbackup.domain.webhooks import WebhookService
from cloudbackup.settings import Settings
from cloudbackup.store.backup_starts import backup_start_store
from cloudbackup.store.db import Database


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
    "backups": lambda db, d, s: BackupService(db, d, stored_snapshots(s)),
    "agent_tokens": lambda db, _, s: AgentTokenService(db, s.agent_token_ttl_seconds),
    "restores": lambda db, d, s: RestoreService(db, d, RootsPolicy.from_settings(s)),
    "browse": lambda db, dispatcher, settings: BrowseService(db, dispatcher, settings),
    "cleanups": lambda db, dispatcher, _: CleanupService(db, dispatcher),
    "events": lambda db, dispatcher, _: EventStreamService(db, dispatcher),
    "activities": lambda db, _, __: ActivityService(db),
    "logfiles": lambda db, dispatcher, s: LogfileService(db, dispatcher, lambda: log_store(s)),
    "summaries": lambda db, _, __: SummaryService(db),
    "agent_documents": lambda db, _, __: AgentDocumentService(db),
    "agent_roots": lambda db, _, s: AgentRootsService(db, RootsPolicy.from_settings(s)),
    "anomalies": lambda db, _, __: AnomalyService(db),
    "webhooks": lambda db, _, s: WebhookService(db, s.webhook_allow_private),
    "vault_objects": lambda db, _, settings: VaultObjectService(db, settings),
    "drills": lambda db, dispatcher, _: DrillService(db, dispatcher),
    "drill_schedules": lambda db, _, __: DrillScheduleService(db),
}
CONTROLLERS: list[type[Controller]] = [BackupController, AgentController, ConfigurationController]
CONTROLLERS += [RestoreController, BrowseController, CleanupController]
CONTROLLERS += [ProjectEventController, AgentEventController, ConfigurationEventController]
CONTROLLERS += [ActivityController, HealthController, LogfileController, VaultController]
CONTROLLERS += [LogContentController]
CONTROLLERS += [SummarySettingsController]
CONTROLLERS += [AdminController, WebhookController, RemoteAgentController]
CONTROLLERS += [AnomalyController]  # API extension: the ransomware guard (issue 14)
CONTROLLERS += [DrillController, BackupDrillController]  # API extension: restore drills (14)
CONTROLLERS += [DrillScheduleController]  # API extension: scheduled drills (14)


def _constant(value: object) -> Provide:
    def provide() -> object:
        return value

    return Provide(provide, sync_to_thread=False, use_cache=True)


AsyncGuard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def _guard_all(*guards: AsyncGuard) -> AsyncGuard:
    """One guard running ``guards`` in order: Litestar copies the route handler for each guard
    of every request, so one guard instead of three is measurably cheaper on B1."""

    async def guard(
        connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        for each in guards:
            await each(connection, handler)

    return guard


ShutdownHook = Callable[[], Awaitable[None]]


def create_api(
    settings: Settings,
    *,
    database: Database,
    dispatcher: Dispatcher,
    publisher: AsyncDispatcher,
    queue_admin: QueueAdministration,
    broker_ping: BrokerPing | None = None,
    agent_channel: AgentChannelReader | None = None,
    agent_channel_writer: AgentChannel | None = None,
    route_handlers: Sequence[ControllerRouterHandler] = (),
    on_shutdown: Sequence[ShutdownHook] = (),
) -> Litestar:
    """Build the API over its collaborators: ``publisher`` is the asyncio dispatcher of B1's
    hot path, ``agent_channel`` serves remote agents' long polls (``agent_channel_writer``
    hands them their vault requests, V2/V5, and their configurations' changes),
    ``route_handlers`` are mounted beside the API (the console), ``on_shutdown`` run after the
    API's own clean-up (the caller closes what it made)."""
    db = database
    state = State(
        {
            "settings": settings,
            "database": db,
            "dispatcher": dispatcher,
            "queue_admin": queue_admin,
            "token_cache": TokenCache(settings.token_cache_seconds),
        }
    )
    services = {name: build(db, dispatcher, settings) for name, build in SERVICES.items()}
    services["health"] = HealthService(db, settings, broker_ping)
    services["queue_admin"] = queue_admin
    services["agent_channel"] = ChannelService(db, agent_channel)
    services["vault_requests"] = VaultRequestService(db, agent_channel_writer)
    # CF1/CF4/CF5, A4 and V1 tell a remote agent to read its working document (A7) again.
    services["agents"] = AgentService(db, agent_channel_writer)
    services["vaults"] = VaultService(db, agent_channel_writer)
    services["configurations"] = ConfigurationService(
        db, RootsPolicy.from_settings(settings), agent_channel_writer
    )
    # B1 is the hot path: it runs on the event loop, on an asyncio engine and publisher.
    start_store = backup_start_store(
        db.url,
        connect_timeout=settings.database_connect_timeout,
        pool_size=settings.api_database_pool_size,
    )
    services["backup_starts"] = BackupStarter(start_store, publisher)

    async def _shutdown() -> None:
        await start_store.close()

    forwarded = (
        [DefineMiddleware(ForwardedHeaders, networks=parse_networks(settings.trusted_proxies))]
        if settings.trusted_proxies
        else []
    )
    # Every handler may take ``call`` and ``paging`` besides the services, by name.
    provided = {name: _constant(service) for name, service in services.items()}
    app = Litestar(
        route_handlers=[versions, metrics, *CONTROLLERS, *route_handlers],
        guards=[_guard_all(require_token, reject_nul_characters, reject_unknown_query)],
        dependencies={**CALL, **PAGING, **provided},
        exception_handlers=EXCEPTION_HANDLERS,
        state=state,
        on_shutdown=[_shutdown, *on_shutdown],
        request_max_body_size=MAX_BODY_BYTES,
        # Outermost first: the client's scheme and host (behind a trusted proxy), limits before
        # anything reads the body, then idempotent replays.
        middleware=[*forwarded, observe, limits_middleware, idempotency_middleware],
        openapi_config=openapi_config(),
    )
    # Every operation of the spec's index that no controller serves answers 501 (§1.9).
    return register_not_implemented(app)
