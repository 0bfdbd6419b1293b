"""The mail outbox: one row per message to send, kept until it is sent (or given up on).

Mail is derived from the event stream: the notifier reads events after its cursor, writes one
outbox row per recipient in the same transaction as the cursor's move, and a sender delivers
due rows, retrying with back-off. A mail server that is down delays mail and loses none.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import table_of, ts_field, utcnow
from cloudbackup.store.tables.outbox_columns import OutboxColumns


class MailMessage(OutboxColumns, table=True):
    __tablename__ = "mail_outbox"
    __table_args__ = (sa.UniqueConstraint("source", "recipient", name="uq_mail_outbox_source"),)

    id: int | None = Field(default=None, primary_key=True)
    # What the message is about, unique per recipient: "event:<id>" (a backup that ended).
    source: str = Field(max_length=200)
    project_id: str = Field(max_length=64, index=True)
    recipient: str = Field(max_length=320)
    subject: str = Field(max_length=300)
    body: str = Field(sa_type=sa.Text)
    sent_at: datetime | None = ts_field()


class NotifierCursor(SQLModel, table=True):
    """How far a reader of the event stream has got (the notifier: the last event id mailed)."""

    __tablename__ = "notifier_cursors"

    name: str = Field(primary_key=True, max_length=64)
    last_event_id: int = 0
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


MAIL_OUTBOX = table_of(MailMessage)
NOTIFIER_CURSORS = table_of(NotifierCursor)
