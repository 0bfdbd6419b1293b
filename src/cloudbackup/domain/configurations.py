"""Configurations: CF1-CF5 and A8 (spec §7, §16, OQ-19, OQ-33, OQ-34, OQ-36, OQ-37).

The rules of §16 are pure functions (:func:`check_rules`) applied to a whole
:class:`ConfigurationDraft`, so a create and an update (the document after every patch
operation) are judged the same way. Deletion is soft: the row stays readable with ``deleted``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from cloudbackup.domain import schedules
from cloudbackup.domain.agent_channel import AgentChannel, tell_document_changed
from cloudbackup.domain.agents import live_agent, storable
from cloudbackup.domain.errors import InvalidInput, NotFound
from cloudbackup.domain.events import record_event
from cloudbackup.domain.roots import NO_POLICY, HostRoots, RootsPolicy
from cloudbackup.store.db import Database
from cloudbackup.store.tables import Agent, Backup, Configuration, as_utc, utcnow

MAX_AGENT_DOCUMENT_BYTES = 1_000_000  # spec §1.8: the agent's working document (A7) <= 1 MB
MAX_RETENTION_DAYS = 36_500
AGENT_DOCUMENT_TIMES = 3  # A7 lists the next three run times (spec A7 [inf])
PATH_TYPES = ("file", "folder")
NOTIFICATION_TYPES = ("email",)
NOT_FOUND = "Configuration not found."

_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{1,63}"
)


class PathItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An inclusion or exclusion (spec §2.4)."""

    type: str
    path: str


class Notification(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: str
    destination: str
    on_success: bool
    on_failure: bool


class ScheduleInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The user-supplied part of a schedule; ``start`` is set by the server."""

    recurrence: list[str]
    time_zone: str


@dataclass(frozen=True, slots=True)
class ConfigurationDraft:
    """Everything a user decides about a configuration (CF1 body minus ``agent_id``)."""

    name: str
    enabled: bool
    schedule: ScheduleInput | None
    retention_days: int
    inclusions: tuple[PathItem, ...]
    exclusions: tuple[PathItem, ...]
    notifications: tuple[Notification, ...]

    @classmethod
    def of(cls, row: Configuration) -> ConfigurationDraft:
        schedule = row.schedule
        return cls(
            name=row.name,
            enabled=row.enabled,
            schedule=None
            if schedule is None
            else ScheduleInput(list(schedule["recurrence"]), schedule["time_zone"]),
            retention_days=row.retention_days,
            inclusions=tuple(msgspec.convert(row.inclusions or [], list[PathItem])),
            exclusions=tuple(msgspec.convert(row.exclusions or [], list[PathItem])),
            notifications=tuple(msgspec.convert(row.notifications or [], list[Notification])),
        )


# -- the rules of §16 -------------------------------------------------------------------------


def check_rules(draft: ConfigurationDraft) -> list[str]:
    """Every rule the draft breaks, one message each (empty when the draft is acceptable)."""
    problems: list[str] = []
    if not draft.name.strip():
        problems.append("name must not be empty.")
    elif "\x00" in draft.name:
        problems.append("name must not contain NUL characters.")
    if not 0 <= draft.retention_days <= MAX_RETENTION_DAYS:
        problems.append(
            f"retention.days must be an integer from 0 (keep forever) to {MAX_RETENTION_DAYS}."
        )
    if draft.schedule is not None:
        problems += schedules.check_schedule(draft.schedule.recurrence, draft.schedule.time_zone)
    problems += check_paths(draft.inclusions, draft.exclusions)
    problems += check_notifications(draft.notifications)
    return problems


def path_key(path: str) -> tuple[str, ...]:
    """Components of an absolute path; a trailing ``/`` does not matter (spec §16.2)."""
    return tuple(part for part in path.split("/") if part)


def is_inside(inner: tuple[str, ...], outer: PathItem) -> bool:
    """True when ``inner`` is a strict descendant of the folder ``outer`` (component-wise)."""
    key = path_key(outer.path)
    return outer.type == "folder" and len(inner) > len(key) and inner[: len(key)] == key


def path_item_problem(kind: str, item: PathItem, max_length: int | None = None) -> str | None:
    """Why an inclusion or exclusion (``kind``) is not a well-formed file or folder, or None."""
    if item.type not in PATH_TYPES:
        return f"{kind} {item.path!r}: type must be 'file' or 'folder', not {item.type!r}."
    return path_problem(kind, item.path, folder=item.type == "folder", max_length=max_length)


def path_problem(
    label: str, path: str, *, folder: bool = True, max_length: int | None = None
) -> str | None:
    """Why ``path`` is not an acceptable absolute path (spec §16.2), or None; with
    ``max_length``, a longer path is not either."""
    if not path.startswith("/"):
        return f"{label} {path!r}: the path must be absolute (start with '/')."
    if max_length is not None and len(path) > max_length:
        return f"{label}: the path may be at most {max_length} characters long."
    if any(ord(ch) < 32 for ch in path):
        return f"{label} {path!r}: the path contains a control character."
    parts = path.rstrip("/").split("/")[1:] if path != "/" else []
    if any(part in ("", ".", "..") for part in parts):
        return f"{label} {path!r}: the path contains an empty, '.' or '..' component."
    if not folder and (path.endswith("/") or not parts):
        return f"{label} {path!r}: a file path must not end with '/'."
    return None


def check_paths(inclusions: Sequence[PathItem], exclusions: Sequence[PathItem]) -> list[str]:
    """Inclusion rules 1-4 and exclusion rules 1-4 of spec §16.2, naming the offending path."""
    problems = [
        problem
        for kind, items in (("Inclusion", inclusions), ("Exclusion", exclusions))
        for item in items
        if (problem := path_item_problem(kind, item)) is not None
    ]
    if not inclusions:
        problems.append("inclusions must name at least one file or folder to back up.")
    if problems:
        return problems  # the relations below need well-formed paths
    problems += _duplicates("Inclusion", inclusions)
    problems += _duplicates("Exclusion", exclusions)
    by_key = {path_key(e.path): e for e in exclusions}
    for inc in inclusions:
        problems += same_path_as_exclusion(inc, by_key)
        problems += lies_inside("Inclusion", inc, inclusions)
        problems += lies_inside("Inclusion", inc, exclusions, "exclusion")
    for exc in exclusions:
        problems += lies_inside("Exclusion", exc, exclusions)
        if not any(is_inside(path_key(exc.path), inc) for inc in inclusions):
            problems.append(f"Exclusion {exc.path!r} does not lie inside any inclusion.")
    return problems


def same_path_as_exclusion(
    inclusion: PathItem, exclusions_by_key: Mapping[tuple[str, ...], PathItem]
) -> list[str]:
    """The problem of an inclusion whose path is also excluded (none: an empty list)."""
    exclusion = exclusions_by_key.get(path_key(inclusion.path))
    if exclusion is None:
        return []
    return [f"Inclusion {inclusion.path!r} has the same path as exclusion {exclusion.path!r}."]


def lies_inside(
    kind: str, item: PathItem, folders: Sequence[PathItem], folders_kind: str | None = None
) -> list[str]:
    """One problem per folder of ``folders`` (inclusions or exclusions: ``folders_kind``,
    default ``kind``'s own) that ``item`` lies inside."""
    key = path_key(item.path)
    other = (folders_kind or kind).lower()
    return [
        f"{kind} {item.path!r} lies inside {other} {folder.path!r}."
        for folder in folders
        if is_inside(key, folder)
    ]


def _duplicates(kind: str, items: Sequence[PathItem]) -> list[str]:
    seen: set[tuple[str, ...]] = set()
    problems: list[str] = []
    for item in items:
        key = path_key(item.path)
        if key in seen:
            problems.append(f"{kind} {item.path!r} is listed more than once.")
        seen.add(key)
    return problems


def check_notifications(notifications: Sequence[Notification]) -> list[str]:
    problems: list[str] = []
    for n in notifications:
        if n.type not in NOTIFICATION_TYPES:
            problems.append(f"Notification type must be 'email', not {n.type!r}.")
        elif len(n.destination) > 254 or not _EMAIL.fullmatch(n.destination):
            problems.append(f"Notification destination {n.destination!r} is not an e-mail address.")
    if not any(n.on_failure for n in notifications):
        problems.append("notifications must include at least one entry with on_failure true.")
    return problems


def require_valid(draft: ConfigurationDraft) -> None:
    problems = check_rules(draft)
    if problems:
        raise InvalidInput("Validation failed.", problems)


def require_in_roots(inclusions: Sequence[PathItem], roots: HostRoots) -> None:
    """Every inclusion lies in the agent's roots and outside the service's own files (a 400
    naming the setting when the agent has no roots at all)."""
    problems = [
        problem
        for item in inclusions
        if (problem := roots.refusal("Inclusion", item.path, follow_last=False)) is not None
    ]
    if problems:
        raise InvalidInput("Validation failed.", problems)


# -- server-set values ------------------------------------------------------------------------


def stored_schedule(schedule: ScheduleInput | None, start: datetime) -> dict[str, Any] | None:
    """The stored (and rendered) schedule: the server's ``start`` first (spec §7.1)."""
    if schedule is None:
        return None
    return {
        "start": schedules.schedule_time(start),
        "recurrence": list(schedule.recurrence),
        "time_zone": schedule.time_zone,
    }


def next_scheduled_time(row: Configuration, now: datetime) -> datetime | None:
    """When the configuration's next scheduled backup is due; ``None`` when none will run."""
    if row.schedule is None or not row.enabled or row.deleted:
        return None
    return schedules.next_occurrence(row.schedule, now)


def agent_document_entry(row: Configuration, vault_id: str, now: datetime) -> dict[str, Any]:
    """One ``configurations[]`` entry of the agent's working document (spec A7, §16.4)."""
    return {
        "id": row.id,
        "name": row.name,
        "enabled": row.enabled,
        "vault_id": vault_id,
        "retention": {"days": row.retention_days},
        "times": schedules.upcoming(row.schedule, now, AGENT_DOCUMENT_TIMES),
        "inclusions": row.inclusions or [],
        "exclusions": row.exclusions or [],
    }


def _apply(row: Configuration, draft: ConfigurationDraft) -> None:
    row.name = draft.name
    row.enabled = draft.enabled
    row.schedule = stored_schedule(draft.schedule, as_utc(row.created_at))
    row.retention_days = draft.retention_days
    row.inclusions = [msgspec.to_builtins(item) for item in draft.inclusions]
    row.exclusions = [msgspec.to_builtins(item) for item in draft.exclusions]
    row.notifications = [msgspec.to_builtins(item) for item in draft.notifications]


class ConfigurationService:
    """Use cases of the configurations resource. Each change, once committed, is pushed to a
    remote agent's ``channel`` so that it reads its working document (A7) again."""

    def __init__(
        self,
        db: Database,
        roots: RootsPolicy = NO_POLICY,
        channel: AgentChannel | None = None,
    ) -> None:
        self.db = db
        self.roots = roots
        self.channel = channel

    def _tell_agent(self, row: Configuration, change: str) -> None:
        tell_document_changed(
            self.db, self.channel, row.agent_id, configuration_id=row.id, change=change
        )

    # -- CF1 --------------------------------------------------------------------------------
    def create(self, project_id: str, agent_id: str, draft: ConfigurationDraft) -> Configuration:
        require_valid(draft)
        now = utcnow()
        with self.db.transaction() as session:
            agent = live_agent(session, project_id, agent_id, lock=True)
            require_in_roots(draft.inclusions, self.roots.for_agent(agent.allowed_roots))
            row = Configuration(
                id=str(uuid.uuid4()),
                project_id=project_id,
                agent_id=agent.id,
                name=draft.name,
                created_at=now,
                updated_at=now,
            )
            _apply(row, draft)
            row.next_scheduled_time = next_scheduled_time(row, now)
            _check_document_size(session, agent, row, now)
            session.add(row)
            _changed(session, row)
        self._tell_agent(row, "created")
        return row

    # -- CF2 / A8 ---------------------------------------------------------------------------
    def list_project(self, project_id: str, restorable: bool | None = None) -> list[Configuration]:
        query = _live(project_id)
        if restorable is not None:
            has_restorable = sa.exists().where(
                col(Backup.configuration_id) == col(Configuration.id),
                col(Backup.restorable).is_(True),
            )
            query = query.where(has_restorable if restorable else ~has_restorable)
        with self.db.transaction() as session:
            return list(session.execute(query).scalars())

    def list_for_agent(self, project_id: str, agent_id: str) -> list[Configuration]:
        with self.db.transaction() as session:
            live_agent(session, project_id, agent_id)
            query = _live(project_id).where(col(Configuration.agent_id) == agent_id)
            return list(session.execute(query).scalars())

    # -- CF3 --------------------------------------------------------------------------------
    def get(self, project_id: str, configuration_id: str) -> Configuration:
        with self.db.transaction() as session:
            row = _configuration(session, project_id, configuration_id)
        if row is None:
            raise NotFound(NOT_FOUND)
        return row

    # -- CF4 --------------------------------------------------------------------------------
    def update(self, project_id: str, configuration_id: str, changes: dict[str, Any]) -> None:
        """Apply the patch (``changes`` maps draft fields to new values) atomically."""
        now = utcnow()
        with self.db.transaction() as session:
            row = _configuration(session, project_id, configuration_id)
            if row is None or row.deleted:
                raise NotFound(NOT_FOUND)
            # Lock order agent -> configuration, as in A5; then re-read the row under the lock.
            try:
                agent = live_agent(session, project_id, row.agent_id, lock=True)
            except NotFound:
                raise NotFound(NOT_FOUND) from None
            session.refresh(row, with_for_update=True)
            if row.deleted:
                raise NotFound(NOT_FOUND)
            draft = replace(ConfigurationDraft.of(row), **changes)
            require_valid(draft)
            if "inclusions" in changes:
                # Only new inclusions are judged: narrowed roots must not block a rename or a
                # disable; the worker refuses what now lies outside when it runs.
                require_in_roots(draft.inclusions, self.roots.for_agent(agent.allowed_roots))
            _apply(row, draft)
            row.next_scheduled_time = next_scheduled_time(row, now)
            row.updated_at = now
            _check_document_size(session, agent, row, now)
            _changed(session, row)
        self._tell_agent(row, "updated")

    # -- CF5 --------------------------------------------------------------------------------
    def delete(self, project_id: str, configuration_id: str) -> None:
        if not storable(configuration_id):
            raise NotFound(NOT_FOUND)
        with self.db.transaction() as session:
            result = session.execute(
                sa.update(Configuration)
                .where(
                    col(Configuration.id) == configuration_id,
                    col(Configuration.project_id) == project_id,
                    col(Configuration.deleted).is_(False),
                )
                .values(deleted=True, next_scheduled_time=None, updated_at=utcnow())
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                raise NotFound(NOT_FOUND)
            row = _configuration(session, project_id, configuration_id)
            assert row is not None
            _changed(session, row)
        self._tell_agent(row, "deleted")


def _live(project_id: str) -> sa.Select[Configuration]:
    return (
        sa.select(Configuration)
        .where(
            col(Configuration.project_id) == project_id,
            col(Configuration.deleted).is_(False),
        )
        .order_by(col(Configuration.created_at), col(Configuration.id))
    )


def _configuration(
    session: Session, project_id: str, configuration_id: str
) -> Configuration | None:
    if not storable(configuration_id):
        return None
    return session.execute(
        sa.select(Configuration).where(
            col(Configuration.id) == configuration_id,
            col(Configuration.project_id) == project_id,
        )
    ).scalar_one_or_none()


def _check_document_size(
    session: Session, agent: Agent, changed: Configuration, now: datetime
) -> None:
    """OQ-37: refuse a change that would push the agent's document over 1 MB."""
    others = session.execute(
        sa.select(Configuration).where(
            col(Configuration.agent_id) == agent.id,
            col(Configuration.deleted).is_(False),
            col(Configuration.id) != changed.id,
        )
    ).scalars()
    entries = [agent_document_entry(row, agent.vault_id, now) for row in [*others, changed]]
    size = len(msgspec.json.encode(entries))
    if size > MAX_AGENT_DOCUMENT_BYTES:
        raise InvalidInput(
            "The agent's configuration document may not exceed 1 MB "
            f"({MAX_AGENT_DOCUMENT_BYTES:,} bytes).",
            [f"With this change the agent's configurations would take {size:,} bytes."],
        )


def _changed(session: Session, row: Configuration) -> None:
    record_event(
        session,
        "configuration_changed",
        project_id=row.project_id,
        agent_id=row.agent_id,
        members={"agent": {"id": row.agent_id}, "request_id": str(uuid.uuid4())},
    )
