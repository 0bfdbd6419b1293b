"""Console sessions: what the console cookie stands for."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import table_of, ts_field, utcnow


class ConsoleSession(SQLModel, table=True):
    """One login to the console. The cookie holds a random secret; only its SHA-256 is stored,
    and the user's API token only sealed under a key derived from that secret."""

    __tablename__ = "console_sessions"

    id: str = Field(primary_key=True, max_length=36)
    secret_hash: str = Field(max_length=64, unique=True, index=True)
    token_id: str = Field(max_length=36, index=True)  # the API token the session acts with
    # base64(nonce + AES-GCM ciphertext) of the API token; emptied when the session ends.
    sealed_token: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))
    expires_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    ended_at: datetime | None = ts_field()


CONSOLE_SESSIONS = table_of(ConsoleSession)
