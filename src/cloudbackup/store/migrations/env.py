"""Alembic environment: migrates CLOUDBACKUP_DATABASE_URL (or the embedded default)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from cloudbackup.settings import get_settings
from cloudbackup.store import tables  # noqa: F401  (registers the tables on the metadata)
from cloudbackup.store.db import create_db_engine, driver_url, is_sqlite

config = context.config
target_metadata = SQLModel.metadata


def _url() -> str:
    return config.attributes.get("database_url") or get_settings().resolved_database_url


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=driver_url(url),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=is_sqlite(url),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    engine = create_db_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=is_sqlite(url),
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
