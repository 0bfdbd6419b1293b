"""Reference servers for ``bench/api_start_backup.py``: the same endpoint without our code.

Both answer ``POST /v2/{project_id}/backups`` with ``201``, a ``Location`` header and a body shaped
like the seed's B1 example (a new backup in ``start_requested``), encoded by msgspec:

* ``bare``: decodes the JSON body and returns a constant body. No I/O at all: the ceiling that
  Litestar + uvicorn reach on this machine.
* ``naive``: decodes the body, inserts one row into a small PostgreSQL table with one SQLAlchemy
  async (psycopg) transaction, ``LPUSH``es the new id to a Redis list with ``redis.asyncio`` and
  returns the body. What a straightforward "write, then enqueue" endpoint costs.

Each is served like ``cloudbackup web`` serves ours: uvicorn, 1 worker, ``log_level="warning"``,
no access log. Run one by hand::

    .venv/bin/python bench/reference_apps.py bare --port 8101
    .venv/bin/python bench/reference_apps.py naive --port 8102 \\
        --database-url postgresql://postgres@127.0.0.1:5432/test \\
        --redis-url redis://127.0.0.1:6379/14 --redis-key bench:naive
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
import uvicorn
from litestar import Litestar, Response, post
from litestar.params import RawBody
from litestar.status_codes import HTTP_201_CREATED
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

BASE_URL = "http://127.0.0.1:8000"
# The same sizes as our API's engine (cloudbackup.store.db: pool_size=10, max_overflow=10).
POOL_SIZE = 10
MAX_OVERFLOW = 10


class StartIn(msgspec.Struct, forbid_unknown_fields=True):
    configuration_id: str
    state: str


class Link(msgspec.Struct):
    href: str
    rel: str


class Ref(msgspec.Struct):
    id: str
    links: list[Link]


class ErrorsSummary(msgspec.Struct):
    count: int
    reason: str
    diagnostics: str
    links: list[Link]


class BackupBody(msgspec.Struct):
    """The seed's B1 answer: field order as in its example body."""

    project_id: str
    id: str
    agent: Ref
    configuration: Ref
    state: str
    started_time: str | None
    ended_time: str | None
    snapshot_id: int | None
    errors: ErrorsSummary
    files_searched: int
    files_backed_up: int
    bytes_searched: int
    bytes_backed_up: int
    bytes_in_db: int
    bandwidth_avg_bps: int
    restorable: bool
    links: list[Link]


def backup_body(
    project_id: str, backup_id: str, configuration_id: str, agent_id: str
) -> BackupBody:
    base = f"{BASE_URL}/v2/{project_id}"
    return BackupBody(
        project_id=project_id,
        id=backup_id,
        agent=Ref(id=agent_id, links=[Link(f"{base}/agents/{agent_id}", "full")]),
        configuration=Ref(
            id=configuration_id, links=[Link(f"{base}/configurations/{configuration_id}", "full")]
        ),
        state="start_requested",
        started_time=None,
        ended_time=None,
        snapshot_id=None,
        errors=ErrorsSummary(
            count=0,
            reason="",
            diagnostics="",
            links=[Link(f"{base}/backups/{backup_id}/errors", "full")],
        ),
        files_searched=0,
        files_backed_up=0,
        bytes_searched=0,
        bytes_backed_up=0,
        bytes_in_db=0,
        bandwidth_avg_bps=0,
        restorable=False,
        links=[
            Link(f"{base}/backups/{backup_id}", "self"),
            Link(f"{base}/backups/{backup_id}/events", "events"),
        ],
    )


def _decode(body: bytes) -> StartIn:
    return msgspec.json.decode(body, type=StartIn)


def _created(body: BackupBody) -> Response[BackupBody]:
    location = f"{BASE_URL}/v2/{body.project_id}/backups/{body.id}"
    return Response(body, status_code=HTTP_201_CREATED, headers={"Location": location})


# -- bare ----------------------------------------------------------------------------------------
def create_bare_app() -> Litestar:
    """The endpoint with no I/O: decode, then answer a constant body."""
    constant = backup_body(
        "110011",
        "8a8d3e2c-6f3b-4c57-9a5e-2f0b7c1d9e44",
        "3f0c52f4-2c1e-4b59-8f3a-6d1e0c9b7a21",
        "b7b8e1d2-4c8a-4f51-a6b0-1e2d3c4b5a69",
    )

    @post("/v2/{project_id:str}/backups", status_code=HTTP_201_CREATED, sync_to_thread=False)
    def start_backup(project_id: str, body: RawBody) -> Response[BackupBody]:
        _decode(body)
        return _created(constant)

    return Litestar(route_handlers=[start_backup], openapi_config=None)


# -- naive ---------------------------------------------------------------------------------------
metadata = sa.MetaData()
naive_backups = sa.Table(
    "naive_backups",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(64), nullable=False),
    sa.Column("configuration_id", sa.String(36), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def async_url(url: str) -> str:
    """``postgresql://...`` -> SQLAlchemy's async psycopg URL."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg_async://" + url[len(prefix) :]
    return url


def create_naive_app(database_url: str, redis_url: str, redis_key: str) -> Litestar:
    """The endpoint done the straightforward async way: one INSERT, one LPUSH."""
    engine: AsyncEngine = create_async_engine(
        async_url(database_url), pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW
    )
    redis: Redis = Redis.from_url(redis_url)
    agent_id = str(uuid.uuid4())

    async def create_table() -> None:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def close() -> None:
        await engine.dispose()
        await redis.aclose()

    @post("/v2/{project_id:str}/backups", status_code=HTTP_201_CREATED)
    async def start_backup(project_id: str, body: RawBody) -> Response[BackupBody]:
        data = _decode(body)
        backup_id = str(uuid.uuid4())
        async with engine.begin() as conn:
            await conn.execute(
                naive_backups.insert().values(
                    id=backup_id,
                    project_id=project_id,
                    configuration_id=data.configuration_id,
                    state=data.state,
                    created_at=datetime.now(UTC),
                )
            )
        await redis.lpush(redis_key, backup_id)
        return _created(backup_body(project_id, backup_id, data.configuration_id, agent_id))

    return Litestar(
        route_handlers=[start_backup],
        on_startup=[create_table],
        on_shutdown=[close],
        openapi_config=None,
    )


# -- serving -------------------------------------------------------------------------------------
def serve(app: Any, host: str, port: int) -> None:
    """Serve with the settings `cloudbackup web` uses for our API."""
    uvicorn.run(app, host=host, port=port, workers=1, log_level="warning", access_log=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a reference app for the B1 benchmark.")
    parser.add_argument("app", choices=["bare", "naive"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--database-url", default="", help="naive: postgresql://... URL")
    parser.add_argument("--redis-url", default="", help="naive: redis://host:port/db")
    parser.add_argument("--redis-key", default="bench:naive", help="naive: list to LPUSH to")
    args = parser.parse_args(argv)
    if args.app == "bare":
        app = create_bare_app()
    else:
        if not args.database_url or not args.redis_url:
            parser.error("naive needs --database-url and --redis-url")
        app = create_naive_app(args.database_url, args.redis_url, args.redis_key)
    serve(app, args.host, args.port)


if __name__ == "__main__":
    main()
