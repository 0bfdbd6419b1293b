"""The composition root: builds what the API needs (database, Celery dispatchers, queue
administration, broker ping), the API itself, and mounts the web console beside it."""

from __future__ import annotations

import gc

from litestar import Litestar

from cloudbackup.api.app import create_api
from cloudbackup.console.router import CONSOLE
from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.webhook_deliveries import publisher as webhook_publisher
from cloudbackup.queue.admin import QueueAdmin
from cloudbackup.queue.agent_channels import agent_channel, agent_channel_reader
from cloudbackup.queue.broker_health import broker_ping
from cloudbackup.queue.publishing import CeleryDispatcher, async_dispatcher
from cloudbackup.settings import Settings, get_settings
from cloudbackup.store.db import Database


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    dispatcher: Dispatcher | None = None,
) -> Litestar:
    """The served app: API and console. Tests pass their own database/dispatcher; production
    builds them here."""
    settings = settings or get_settings()
    owns_database = database is None
    db = database or Database(
        settings.resolved_database_url, connect_timeout=settings.database_connect_timeout
    )
    if dispatcher is None:
        dispatcher = CeleryDispatcher.from_settings(settings)
    chosen = dispatcher
    # Webhook deliveries of the events a request writes go out after its commit.
    db.after_commit.append(webhook_publisher(lambda: chosen))
    publisher = async_dispatcher(dispatcher, timeout=settings.broker_publish_timeout)
    channel = agent_channel_reader(settings.broker_url)

    async def close() -> None:
        await publisher.close()
        if channel is not None:
            await channel.close()
        if owns_database:
            db.dispose()

    return create_api(
        settings,
        database=db,
        dispatcher=dispatcher,
        publisher=publisher,
        queue_admin=QueueAdmin(db, settings),
        broker_ping=broker_ping(settings),
        agent_channel=channel,
        agent_channel_writer=agent_channel(settings.broker_url),
        route_handlers=[CONSOLE],  # the web console, /console (cloudbackup.console)
        on_shutdown=[close],
    )


def create_served_app() -> Litestar:
    """The app as ``cloudbackup web`` serves it: built, then its objects frozen out of the
    garbage collector's reach, so a full collection (~90 ms over the ~160k objects of the
    loaded app) never stalls the requests in flight."""
    app = create_app()
    gc.freeze()
    return app
