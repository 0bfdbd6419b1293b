"""The database session: read-only transactions on SQLite take no write lock."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from cloudbackup.store.db import Database
from cloudbackup.store.tables import BACKUPS


def test_a_read_only_transaction_does_not_hold_up_a_writer_in_another_process(settings):
    reader = Database(settings.resolved_database_url)
    writer = Database(settings.resolved_database_url)  # its own connection, as another process
    try:
        with writer.engine.connect() as connection:  # fail fast instead of waiting 30 s
            connection.exec_driver_sql("PRAGMA busy_timeout=500")
            connection.commit()
        reading = threading.Event()
        wrote = threading.Event()

        def write() -> None:
            reading.wait(5)
            with writer.transaction() as session:
                session.execute(sa.delete(BACKUPS).where(BACKUPS.c.id == "none"))
            wrote.set()

        thread = threading.Thread(target=write)
        thread.start()
        with reader.read() as session:
            session.execute(sa.select(sa.func.count()).select_from(BACKUPS)).scalar_one()
            reading.set()
            assert wrote.wait(5), "the writer waited for the reader's transaction"
        thread.join()
    finally:
        reader.dispose()
        writer.dispose()
