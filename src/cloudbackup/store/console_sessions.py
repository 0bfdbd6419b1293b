"""Console sessions (``console_sessions``): opened at login, looked up per page, ended at logout."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TypedDict, Unpack

import sqlalchemy as sa

from cloudbackup.store.db import Database
from cloudbackup.store.tables import CONSOLE_SESSIONS, as_utc, utcnow

C = CONSOLE_SESSIONS.c


class NewConsoleSession(TypedDict):
    """The columns a login gives a new session (its id and ``created_at`` are set here)."""

    secret_hash: str
    token_id: str
    sealed_token: str
    expires_at: datetime


def open_console_session(db: Database, **new: Unpack[NewConsoleSession]) -> str:
    """Record a new session and forget the ones that expired; returns the new session's id."""
    session_id = str(uuid.uuid4())
    now = utcnow()
    with db.transaction() as session:
        session.execute(sa.delete(CONSOLE_SESSIONS).where(C.expires_at < now))
        session.execute(sa.insert(CONSOLE_SESSIONS).values(id=session_id, created_at=now, **new))
    return session_id


def live_console_session(db: Database, secret_hash: str) -> tuple[str, str] | None:
    """(id, sealed token) of the session behind ``secret_hash`` while neither ended nor expired."""
    with db.read() as session:
        row = session.execute(
            sa.select(C.id, C.sealed_token, C.expires_at).where(
                C.secret_hash == secret_hash, C.ended_at.is_(None)
            )
        ).first()
    if row is None or row.sealed_token is None or as_utc(row.expires_at) <= utcnow():
        return None
    return row.id, row.sealed_token


def end_console_session(db: Database, secret_hash: str) -> None:
    """Logout: the session ends and its sealed token is dropped, so the cookie opens nothing."""
    with db.transaction() as session:
        session.execute(
            sa.update(CONSOLE_SESSIONS)
            .where(C.secret_hash == secret_hash, C.ended_at.is_(None))
            .values(ended_at=utcnow(), sealed_token=None)
        )
