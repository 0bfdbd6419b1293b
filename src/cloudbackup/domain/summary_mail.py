"""The daily and weekly summaries of S1/S2 (spec §13), sent by the same outbox as backup mail.

A daily summary covers the previous UTC day, a weekly one the previous ISO week (Monday to
Sunday, UTC). Each is queued once per project, period and recipient: the outbox's unique
``source`` (``summary:daily:2026-12-01:<project>``) makes every later pass a no-op, so beat can
run the pass as often as it likes and a beat that was down catches up at its next pass.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

from cloudbackup.domain.notifications import size_text
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.mail_outbox import MailOutbox, PeriodLine
from cloudbackup.store.tables import utcnow

FAILURES = frozenset({"failed", "missed", "completed_with_errors"})


def period_of(kind: str, now: datetime) -> tuple[str, datetime, datetime]:
    """The label and [start, end) of the last whole day or ISO week before ``now`` (UTC)."""
    today = datetime.combine(now.astimezone(UTC).date(), time(), tzinfo=UTC)
    if kind == "daily":
        start = today - timedelta(days=1)
        return start.date().isoformat(), start, today
    monday = today - timedelta(days=today.weekday())
    start = monday - timedelta(days=7)
    year, week, _ = start.isocalendar()
    return f"{year}-W{week:02d}", start, monday


def compose_summary(
    kind: str, label: str, project_id: str, lines: Sequence[PeriodLine], public_url: str
) -> tuple[str, str]:
    total = sum(line.count for line in lines)
    failed = sum(line.count for line in lines if line.state in FAILURES)
    stored = sum(line.bytes_backed_up for line in lines)
    subject = f"{kind.capitalize()} backup summary {label}: {total} backups, {failed} not clean"
    body = [
        f"Backups of project {project_id} that ended in {label} (UTC):",
        "",
        f"Backups:      {total}",
        f"Not clean:    {failed} (failed, missed or completed with errors)",
        f"Backed up:    {size_text(stored)}",
        "",
    ]
    by_config: dict[tuple[str, str], list[PeriodLine]] = defaultdict(list)
    for line in lines:
        by_config[(line.configuration_name, line.agent_name)].append(line)
    if not by_config:
        body.append("No backup ended in this period.")
    for (name, agent), parts in by_config.items():
        states = ", ".join(f"{p.count} {p.state}" for p in parts)
        body.append(f"  {name} on {agent}: {states}")
    body += ["", f"Backups: {public_url.rstrip('/')}/console/backups"]
    return subject, "\n".join(body) + "\n"


def queue_summaries(db: Database, settings: Settings, now: datetime | None = None) -> int:
    """Queue the summaries due by ``now``; how many messages were new."""
    now = now or utcnow()
    queued = 0
    for kind in ("daily", "weekly"):
        label, start, end = period_of(kind, now)
        with db.transaction() as session:
            outbox = MailOutbox(session)
            for project_id, recipients in outbox.summary_recipients(kind):
                source = f"summary:{kind}:{label}:{project_id}"
                known = {m.recipient for m in outbox.messages(project_id) if m.source == source}
                fresh = [address for address in recipients if address not in known]
                if not fresh:
                    continue
                lines = outbox.period_lines(project_id, start, end)
                subject, body = compose_summary(kind, label, project_id, lines, settings.public_url)
                messages: list[dict[str, Any]] = [
                    {
                        "source": source,
                        "project_id": project_id,
                        "recipient": address,
                        "subject": subject,
                        "body": body,
                    }
                    for address in fresh
                ]
                outbox.add(messages)
                queued += len(messages)
    return queued
