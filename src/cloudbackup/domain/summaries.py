"""Project-wide summary settings: S1/S2 (spec §13, OQ-36).

PUT replaces the whole document; ``daily``/``weekly`` default to ``false``; recipients are
e-mail addresses (the only notification type the spec shows). Before any PUT a project reads
the defaults. ``domain.summary_mail`` sends the summaries these settings ask for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cloudbackup.domain.configurations import _EMAIL as EMAIL_PATTERN
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.domain.event_stream import upsert
from cloudbackup.store.db import Database
from cloudbackup.store.tables import SUMMARY_SETTINGS, SummarySettings, utcnow

MAX_RECIPIENTS = 100
NOTIFICATION_TYPES = ("email",)


@dataclass(frozen=True, slots=True)
class Recipient:
    type: str
    destination: str


@dataclass(frozen=True, slots=True)
class Summaries:
    daily: bool = False
    weekly: bool = False
    notifications: tuple[Recipient, ...] = field(default_factory=tuple)


def check_summaries(settings: Summaries) -> list[str]:
    problems: list[str] = []
    if len(settings.notifications) > MAX_RECIPIENTS:
        problems.append(f"notifications may list at most {MAX_RECIPIENTS} recipients.")
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(settings.notifications):
        where = f"notifications[{index}]"
        if item.type not in NOTIFICATION_TYPES:
            problems.append(f"{where}.type must be 'email', not {item.type!r}.")
        elif len(item.destination) > 254 or not EMAIL_PATTERN.fullmatch(item.destination):
            problems.append(f"{where}.destination {item.destination!r} is not an e-mail address.")
        key = (item.type, item.destination.lower())
        if key in seen:
            problems.append(f"{where}.destination {item.destination!r} is listed more than once.")
        seen.add(key)
    return problems


class SummaryService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, project_id: str, settings: Summaries) -> None:
        problems = check_summaries(settings)
        if problems:
            raise InvalidInput("Validation failed.", problems)
        values = {
            "project_id": project_id,
            "daily": settings.daily,
            "weekly": settings.weekly,
            "notifications": [
                {"type": item.type, "destination": item.destination}
                for item in settings.notifications
            ],
            "updated_at": utcnow(),
        }
        with self.db.transaction() as session:
            upsert(session, SUMMARY_SETTINGS, values, key="project_id")

    def get(self, project_id: str) -> Summaries:
        with self.db.transaction() as session:
            row = session.get(SummarySettings, project_id)
        if row is None:
            return Summaries()
        return Summaries(
            daily=row.daily,
            weekly=row.weekly,
            notifications=tuple(
                Recipient(item["type"], item["destination"]) for item in row.notifications or []
            ),
        )
