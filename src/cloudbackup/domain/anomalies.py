"""The ransomware guard (issue 14, part 3): notice a backup that looks like mass encryption and
hold its configuration's older snapshots until an admin has looked.

After a backup's final state is committed (``completed`` or ``completed_with_errors``), the worker
calls :func:`guard_backup` with the engine's result. The backup is measured against the previous
snapshot of its inclusions: the share of that snapshot's files whose content changed, the share
that is gone, and how well the data new to the vault compressed (stored / plaintext bytes, 1.0 =
incompressible) against the configuration's last backups. :func:`is_anomalous` decides with
:class:`Thresholds` (``CLOUDBACKUP_ANOMALY_*``; see docs/decisions.md for the defaults).

An anomaly is a row (state ``open``), a ``backup_anomaly`` event (so the event lists and the
webhooks, which deliver from the event log, carry it) and, where mail is configured, a message
to the configuration's ``on_failure`` recipients. While it is open, retention and cleanups
forget none of the configuration's backups older than the anomalous one
(``store.anomalies.held_backup_ids``); dismissing it releases them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from cloudbackup.domain.events import record_backup_event
from cloudbackup.domain.project_pages import ProjectPages
from cloudbackup.engine import BackupResult
from cloudbackup.engine.backup_results import ChangeMeasures
from cloudbackup.settings import Settings
from cloudbackup.store.anomalies import OPEN, AnomalyRepository
from cloudbackup.store.db import Database
from cloudbackup.store.mail_outbox import MailOutbox
from cloudbackup.store.repositories import BackupRepository, ConfigurationRepository
from cloudbackup.store.tables import AGENTS, Anomaly, Backup, Configuration

log = logging.getLogger("cloudbackup.anomalies")

EVENT = "backup_anomaly"
DISMISSED = "dismissed"
STATES = (OPEN, DISMISSED)
GUARDED_STATES = frozenset({"completed", "completed_with_errors"})
# How many earlier backups of the configuration make its compressibility history.
HISTORY_BACKUPS = 10


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a backup is an anomaly: at least ``min_files`` files to compare with, at least
    ``changed_ratio`` of them changed or deleted, and the new data compressing to at least
    ``compressed_size_ratio`` of its size and by ``compression_rise`` worse than the history."""

    changed_ratio: float = 0.5
    compressed_size_ratio: float = 0.9
    compression_rise: float = 0.1
    min_files: int = 20

    @classmethod
    def of(cls, settings: Settings) -> Thresholds:
        return cls(
            changed_ratio=settings.anomaly_changed_ratio,
            compressed_size_ratio=settings.anomaly_compressed_size_ratio,
            compression_rise=settings.anomaly_compression_rise,
            min_files=settings.anomaly_min_files,
        )


# The change a backup's result measures against the previous snapshot of its inclusions
# (engine.ChangeMeasures): judged here, and recorded as the later backups' history.
CHANGE_FIELDS: tuple[str, ...] = ChangeMeasures.__struct_fields__


@dataclass(frozen=True, slots=True)
class Measures:
    """One backup against the previous snapshot of its inclusions, and the history's bytes."""

    previous_files: int
    files_changed: int
    files_deleted: int
    new_plain_bytes: int
    new_stored_bytes: int
    history_plain_bytes: int = 0
    history_stored_bytes: int = 0

    @classmethod
    def of(cls, result: BackupResult, history: tuple[int, int]) -> Measures:
        """The result's change, and the (plaintext, stored) bytes of the history."""
        change = {name: getattr(result, name) for name in CHANGE_FIELDS}
        return cls(**change, history_plain_bytes=history[0], history_stored_bytes=history[1])

    def change(self) -> dict[str, int]:
        """The change as the columns of its record, the later backups' history."""
        return {name: getattr(self, name) for name in CHANGE_FIELDS}

    @property
    def changed_ratio(self) -> float:
        return self.files_changed / self.previous_files if self.previous_files else 0.0

    @property
    def deleted_ratio(self) -> float:
        return self.files_deleted / self.previous_files if self.previous_files else 0.0

    @property
    def compressed_size_ratio(self) -> float:
        """Stored / plaintext bytes of the new data (about 1.0 for encrypted or random data)."""
        return self.new_stored_bytes / self.new_plain_bytes if self.new_plain_bytes else 0.0

    @property
    def history_compressed_size_ratio(self) -> float | None:
        """The same over the configuration's earlier backups; None without any."""
        if not self.history_plain_bytes:
            return None
        return self.history_stored_bytes / self.history_plain_bytes


def is_anomalous(measures: Measures, thresholds: Thresholds) -> bool:
    """Whether a backup looks like its tree was rewritten as incompressible data."""
    m, t = measures, thresholds
    if m.previous_files < t.min_files or m.new_plain_bytes == 0:
        return False
    if m.changed_ratio + m.deleted_ratio < t.changed_ratio:
        return False
    ratio = m.compressed_size_ratio
    if ratio < t.compressed_size_ratio:
        return False
    history = m.history_compressed_size_ratio
    return history is None or ratio - history >= t.compression_rise


def guard_backup(
    db: Database, settings: Settings, backup_id: str, result: BackupResult
) -> Anomaly | None:
    """Record what the completed backup changed and raise an anomaly if it looks like mass
    encryption: the row, its event and its mail in one transaction. The anomaly, or None."""
    with db.transaction() as session:
        backup = BackupRepository(session).get(backup_id)
        if backup is None or backup.state not in GUARDED_STATES or backup.seq is None:
            return None
        repo = AnomalyRepository(session)
        measures = Measures.of(
            result, repo.history(backup.configuration_id, backup.seq, HISTORY_BACKUPS)
        )
        repo.record_change(
            {
                "backup_id": backup.id,
                "configuration_id": backup.configuration_id,
                "backup_seq": backup.seq,
                **measures.change(),
            }
        )
        if not is_anomalous(measures, Thresholds.of(settings)):
            return None
        anomaly = _new_anomaly(backup, measures)
        repo.insert(anomaly)
        record_backup_event(session, backup, EVENT, extra={"anomaly": anomaly_members(anomaly)})
        if settings.smtp_url:
            _queue_mail(session, settings, backup, anomaly)
    log.warning(
        "backup %s looks like mass encryption: anomaly %s (%.0f%% changed, %.0f%% deleted, "
        "new data stored at %.2f of its size); older snapshots are held",
        backup_id,
        anomaly.id,
        100 * anomaly.changed_ratio,
        100 * anomaly.deleted_ratio,
        anomaly.compressed_size_ratio,
    )
    return anomaly


def _new_anomaly(backup: Backup, m: Measures) -> Anomaly:
    return Anomaly(
        id=str(uuid.uuid4()),
        project_id=backup.project_id,
        agent_id=backup.agent_id,
        configuration_id=backup.configuration_id,
        backup_id=backup.id,
        files_compared=m.previous_files,
        files_changed=m.files_changed,
        files_deleted=m.files_deleted,
        changed_ratio=round(m.changed_ratio, 4),
        deleted_ratio=round(m.deleted_ratio, 4),
        new_plain_bytes=m.new_plain_bytes,
        compressed_size_ratio=round(m.compressed_size_ratio, 4),
        history_compressed_size_ratio=(
            None
            if m.history_compressed_size_ratio is None
            else round(m.history_compressed_size_ratio, 4)
        ),
    )


def anomaly_members(anomaly: Anomaly) -> dict[str, Any]:
    """What the ``backup_anomaly`` event says of its anomaly."""
    return {
        "id": anomaly.id,
        "state": anomaly.state,
        "changed_ratio": anomaly.changed_ratio,
        "deleted_ratio": anomaly.deleted_ratio,
        "compressed_size_ratio": anomaly.compressed_size_ratio,
        "history_compressed_size_ratio": anomaly.history_compressed_size_ratio,
    }


def failure_recipients(config: Configuration) -> list[str]:
    """The configuration's ``on_failure`` e-mail addresses, each once."""
    found: list[str] = []
    for item in config.notifications or []:
        address = str(item.get("destination", ""))
        wanted = item.get("type") == "email" and item.get("on_failure")
        if wanted and address and address not in found:
            found.append(address)
    return found


def compose_mail(
    anomaly: Anomaly, configuration_name: str, agent_name: str, public_url: str
) -> tuple[str, str]:
    """Subject and body of the mail about an anomaly."""
    base = public_url.rstrip("/")
    history = anomaly.history_compressed_size_ratio
    lines = [
        f'The latest backup of configuration "{configuration_name}" on agent "{agent_name}" '
        "looks like its files were encrypted in bulk (ransomware).",
        "",
        f"Files changed:  {anomaly.files_changed} of {anomaly.files_compared} "
        f"({100 * anomaly.changed_ratio:.0f}%)",
        f"Files deleted:  {anomaly.files_deleted} ({100 * anomaly.deleted_ratio:.0f}%)",
        f"New data:       stored at {anomaly.compressed_size_ratio:.2f} of its size"
        + ("" if history is None else f" (earlier backups: {history:.2f})"),
        "",
        "Retention and cleanups keep every older backup of this configuration until an admin",
        "dismisses the anomaly (PATCH /state to dismissed). Check the machine before that.",
        "",
        f"Anomaly: {base}/v2/{anomaly.project_id}/anomalies/{anomaly.id}",
        f"Backup:  {base}/console/backups/{anomaly.backup_id}",
    ]
    subject = f"Possible ransomware: backup of {configuration_name} on {agent_name}"
    return subject[:300], "\n".join(lines) + "\n"


def _queue_mail(session: Session, settings: Settings, backup: Backup, anomaly: Anomaly) -> None:
    config = ConfigurationRepository(session).get(backup.configuration_id)
    if config is None:
        return
    to = failure_recipients(config)
    if not to:
        return
    agent_name = session.execute(
        sa.select(AGENTS.c.name).where(AGENTS.c.id == backup.agent_id)
    ).scalar_one_or_none()
    subject, body = compose_mail(
        anomaly, config.name, str(agent_name or backup.agent_id), settings.public_url
    )
    MailOutbox(session).add(
        [
            {
                "source": f"anomaly:{anomaly.id}",
                "project_id": anomaly.project_id,
                "recipient": address,
                "subject": subject,
                "body": body,
            }
            for address in to
        ]
    )


class AnomalyService(ProjectPages[Anomaly]):
    """The anomalies API: list (filtered by ``state``), read, dismiss."""

    noun = "anomaly"

    def __init__(self, db: Database) -> None:
        self.db = db

    def rows(self, session: Session) -> AnomalyRepository:
        return AnomalyRepository(session)

    def get(self, project_id: str, anomaly_id: str) -> Anomaly:
        with self.db.read() as session:
            row = AnomalyRepository(session).get(project_id, anomaly_id)
        if row is None:
            raise NotFound(f"Anomaly {anomaly_id} not found.")
        return row

    def check_filters(self, filters: Mapping[str, Any]) -> None:
        state = filters.get("state")
        if state is not None and state not in STATES:
            raise InvalidInput("Validation failed.", [f"state must be one of {', '.join(STATES)}."])

    def dismiss(
        self, project_id: str, anomaly_id: str, token_id: str, agent_id: str | None
    ) -> Anomaly:
        """Close an open anomaly, releasing its hold. An agent's token may not: the machine the
        anomaly is about is the one that holds that token."""
        if agent_id is not None:
            raise Forbidden("An agent's token cannot dismiss an anomaly; an admin must.")
        with self.db.transaction() as session:
            repo = AnomalyRepository(session)
            row = repo.get(project_id, anomaly_id)
            if row is None:
                raise NotFound(f"Anomaly {anomaly_id} not found.")
            if row.state != OPEN:
                raise Conflict(f"Anomaly {anomaly_id} is {row.state} already.")
            repo.dismiss(anomaly_id, token_id)
            session.refresh(row)
        log.info("anomaly %s dismissed by token %s: its hold is released", anomaly_id, token_id)
        return row
