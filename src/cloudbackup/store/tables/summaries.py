"""Project-wide summary e-mail settings (spec §13)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from cloudbackup.store.tables.base import json_field, table_of, utcnow


class SummarySettings(SQLModel, table=True):
    """One row per project that has ever PUT its settings; absent means the defaults."""

    __tablename__ = "summary_settings"

    project_id: str = Field(primary_key=True, max_length=64)
    daily: bool = False
    weekly: bool = False
    notifications: list[dict[str, Any]] | None = json_field()  # [{"type", "destination"}]
    updated_at: datetime = Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True))


SUMMARY_SETTINGS = table_of(SummarySettings)
