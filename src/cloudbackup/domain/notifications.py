"""E-mail when a backup ends (a configuration's ``notifications``, spec §16, OQ-36).

Mail is derived from the event stream, so no writer of a final state has to remember it and a
crash between the state change and the mail loses nothing: :func:`collect` reads the events of
backups that ended after its cursor and, in the same transaction that moves the cursor, queues
one message per recipient in the outbox; :func:`send_due` delivers due messages through a
:class:`Mailer` and retries the ones the server refused or could not take, backing off from
30 s to an hour, for three days. Who is told: ``on_success`` recipients of a ``completed``
backup; ``on_failure`` recipients of a ``failed``, ``completed_with_errors`` or ``missed`` one
(``stopped`` and ``skipped`` tell nobody: a person or the scheduler chose them).

The first pass starts at the newest event: turning mail on does not send the history.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.mail_outbox import EndedBackup, FirstError, MailOutbox
from cloudbackup.store.tables import as_utc, utcnow

log = logging.getLogger("cloudbackup.mail")

CURSOR = "backup-mail"
ENDED_EVENTS = ("backup_completed", "backup_failed", "backup_missed")
SUCCESS_STATES = frozenset({"completed"})
FAILURE_STATES = frozenset({"failed", "completed_with_errors", "missed"})
FIRST_ERRORS = 5
BATCH = 200
LEASE = timedelta(minutes=2)  # a sender that dies mid-send leaves the message for another
FIRST_RETRY = timedelta(seconds=30)
LONGEST_WAIT = timedelta(hours=1)
GIVE_UP_AFTER = timedelta(days=3)


class Mailer(Protocol):
    """Sends one message; raises when the mail server did not take it (it is retried)."""

    def send(self, recipient: str, subject: str, body: str) -> None: ...


@dataclass(frozen=True, slots=True)
class SendReport:
    sent: int
    retried: int
    given_up: int


def recipients(backup: EndedBackup) -> list[str]:
    """Who hears of this ending, each once, in the configuration's order."""
    flag = (
        "on_success"
        if backup.state in SUCCESS_STATES
        else "on_failure"
        if backup.state in FAILURE_STATES
        else None
    )
    if flag is None:
        return []
    found: list[str] = []
    for item in backup.notifications:
        address = str(item.get("destination", ""))
        if item.get("type") == "email" and item.get(flag) and address and address not in found:
            found.append(address)
    return found


def compose(backup: EndedBackup, errors: Sequence[FirstError], public_url: str) -> tuple[str, str]:
    """Subject and body of the mail about ``backup``."""
    state = backup.state.replace("_", " ")
    subject = f"Backup {state}: {backup.configuration_name} on {backup.agent_name}"
    base = public_url.rstrip("/")
    c = backup.counters
    lines = [
        f'The backup of configuration "{backup.configuration_name}" on agent '
        f'"{backup.agent_name}" ended: {backup.state}.',
        "",
        f"Started:      {_time(backup.started_time)}",
        f"Ended:        {_time(backup.ended_time)}",
        f"Files:        {c['files_backed_up']} backed up of {c['files_searched']} found",
        f"Data:         {size_text(c['bytes_backed_up'])} backed up"
        f" of {size_text(c['bytes_searched'])}",
        f"Errors:       {backup.errors_count}"
        + (f" ({backup.errors_reason})" if backup.errors_reason else ""),
    ]
    if backup.errors_diagnostics:
        lines.append(f"Diagnostics:  {backup.errors_diagnostics}")
    if errors:
        lines += ["", f"First {len(errors)} of the errors:"]
        lines += [
            f"  {e.path}: {e.type}" + (f" ({e.description})" if e.description else "")
            for e in errors
        ]
    lines += [
        "",
        f"Backup:  {base}/console/backups/{backup.backup_id}",
        f"API:     {base}/v2/{backup.project_id}/backups/{backup.backup_id}",
        f"Agent:   {backup.agent_id}",
    ]
    return subject, "\n".join(lines) + "\n"


def collect(db: Database, settings: Settings) -> int:
    """Queue the mail of backups that ended since the last pass; how many messages."""
    queued = 0
    while True:
        with db.transaction() as session:
            outbox = MailOutbox(session)
            was = outbox.cursor(CURSOR)
            if was is None:
                outbox.move_cursor(CURSOR, None, outbox.last_event_id())
                return 0
            ended = outbox.ended_backups(was, ENDED_EVENTS, BATCH)
            if not ended:
                return queued
            messages: list[dict[str, Any]] = []
            for backup in ended:
                to = recipients(backup)
                if not to:
                    continue
                errors = (
                    outbox.first_errors(backup.backup_id, FIRST_ERRORS)
                    if backup.errors_count
                    else []
                )
                subject, body = compose(backup, errors, settings.public_url)
                messages += [
                    {
                        "source": f"event:{backup.event_id}",
                        "project_id": backup.project_id,
                        "recipient": address,
                        "subject": subject[:300],
                        "body": body,
                    }
                    for address in to
                ]
            outbox.add(messages)
            if not outbox.move_cursor(CURSOR, was, ended[-1].event_id):
                session.rollback()  # another notifier took this batch; read again after it
                continue
            queued += len(messages)


def send_due(db: Database, mailer: Mailer, now: datetime | None = None) -> SendReport:
    """Send every message that is due; a refused one waits longer each time, then is given up."""
    now = now or utcnow()
    sent = retried = given_up = 0
    with db.transaction() as session:
        due = MailOutbox(session).due(now, BATCH)
    for message in due:
        with db.transaction() as session:
            if not MailOutbox(session).lease(message.id, message.next_attempt_at, now + LEASE):
                continue  # another sender has it
        try:
            mailer.send(message.recipient, message.subject, message.body)
        except Exception as exc:  # the server is down or refused: keep it, try again later
            error = f"{type(exc).__name__}: {exc}"[:500]
            give_up = now - as_utc(message.created_at) >= GIVE_UP_AFTER
            wait = min(FIRST_RETRY * 2 ** min(message.attempts, 16), LONGEST_WAIT)
            with db.transaction() as session:
                MailOutbox(session).record_attempt(
                    message.id,
                    state="failed" if give_up else "pending",
                    next_attempt_at=now + wait,
                    last_error=error,
                )
            if give_up:
                given_up += 1
                log.error("mail to %s given up after 3 days: %s", message.recipient, error)
            else:
                retried += 1
                log.warning(
                    "mail to %s not sent, retrying in %s: %s", message.recipient, wait, error
                )
            continue
        with db.transaction() as session:
            MailOutbox(session).record_attempt(
                message.id, state="sent", sent_at=utcnow(), last_error=None
            )
        sent += 1
    return SendReport(sent, retried, given_up)


def _time(value: datetime | None) -> str:
    return "-" if value is None else as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def size_text(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"
