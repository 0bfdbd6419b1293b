"""Mail when a backup ends, through a real SMTP server process: who is told, what the message
says, and that a server that is down delays mail and loses none."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from cloudbackup.domain import notifications
from cloudbackup.mail.smtp import SmtpMailer
from cloudbackup.store.mail_outbox import MailOutbox
from cloudbackup.store.tables import BACKUP_ERRORS, EVENTS, utcnow
from cloudbackup.store.tables.events import backup_event_row
from factories import rows
from factories.mail import smtp_server

EVENT_OF = {
    "completed": "backup_completed",
    "completed_with_errors": "backup_completed",
    "failed": "backup_failed",
    "missed": "backup_missed",
    "stopped": "backup_stopped",
}


def _ended(db, config, state, errors=0):
    backup = rows.backup(
        db,
        config.id,
        state=state,
        started_time=utcnow() - timedelta(minutes=3),
        ended_time=utcnow(),
        files_searched=12,
        bytes_searched=5 * 1024 * 1024,
        files_backed_up=12 - errors,
        bytes_backed_up=4 * 1024 * 1024,
        errors_count=errors,
        errors_reason="unable_to_process_some_files" if errors else None,
    )
    with db.transaction() as session:
        for index in range(errors):
            session.execute(
                sa.insert(BACKUP_ERRORS).values(
                    backup_id=backup.id,
                    index=index,
                    path=f"/web/locked-{index}.db",
                    type="file_unreadable",
                    exception_description="Permission denied",
                )
            )
        session.execute(
            sa.insert(EVENTS).values(
                backup_event_row(
                    EVENT_OF[state],
                    project_id=backup.project_id,
                    agent_id=backup.agent_id,
                    configuration_id=backup.configuration_id,
                    backup_id=backup.id,
                )
            )
        )
    return backup


def _setup(db, **config):
    agent = rows.agent(db, name="web-1")
    people = [
        {
            "type": "email",
            "destination": "ops@example.com",
            "on_success": False,
            "on_failure": True,
        },
        {"type": "email", "destination": "dev@example.com", "on_success": True, "on_failure": True},
    ]
    return rows.configuration(db, agent, name="nightly", notifications=people, **config)


def test_each_ending_mails_the_recipients_it_should_with_what_happened(db, settings, tmp_path):
    config = _setup(db)
    assert notifications.collect(db, settings) == 0  # the first pass only places the cursor
    failed = _ended(db, config, "failed")
    completed = _ended(db, config, "completed")
    partial = _ended(db, config, "completed_with_errors", errors=2)
    _ended(db, config, "missed")
    _ended(db, config, "stopped")  # a person chose it: nobody is told

    assert notifications.collect(db, settings) == 2 + 1 + 2 + 2
    assert notifications.collect(db, settings) == 0  # each ending is queued once
    with smtp_server(tmp_path) as server:
        report = notifications.send_due(db, SmtpMailer.from_url(server.url, "backups@example.com"))
        received = server.messages()

    assert report == notifications.SendReport(sent=7, retried=0, given_up=0)
    by_subject: dict[str, list[str]] = {}
    for message in received:
        by_subject.setdefault(message["Subject"], []).append(message["To"])
        assert message["From"] == "backups@example.com"
    assert sorted(by_subject["Backup completed: nightly on web-1"]) == ["dev@example.com"]
    for state in ("failed", "completed with errors", "missed"):
        assert sorted(by_subject[f"Backup {state}: nightly on web-1"]) == [
            "dev@example.com",
            "ops@example.com",
        ]
    partial_mail = next(m for m in received if m["Subject"].startswith("Backup completed with"))
    body = partial_mail.get_payload(decode=True).decode()
    assert "Files:        10 backed up of 12 found" in body
    assert "Errors:       2 (unable_to_process_some_files)" in body
    assert "/web/locked-0.db: file_unreadable (Permission denied)" in body
    assert f"/console/backups/{partial.id}" in body
    assert f"/v2/{partial.project_id}/backups/{partial.id}" in body
    assert failed.id != completed.id


def test_a_mail_server_that_is_down_delays_mail_and_loses_none(db, settings, tmp_path):
    config = _setup(db)
    notifications.collect(db, settings)
    _ended(db, config, "failed")
    notifications.collect(db, settings)

    with smtp_server(tmp_path, started=False) as server:
        mailer = SmtpMailer.from_url(server.url, "backups@example.com", timeout=2)
        down = notifications.send_due(db, mailer)
        assert down == notifications.SendReport(sent=0, retried=2, given_up=0)
        with db.transaction() as session:
            waiting = MailOutbox(session).messages()
        assert [m.state for m in waiting] == ["pending", "pending"]
        assert all(m.attempts == 1 and "Connection refused" in m.last_error for m in waiting)
        # Not due yet: a second pass right away leaves them alone.
        assert notifications.send_due(db, mailer).retried == 0

        server.start()
        later = utcnow() + timedelta(seconds=31)
        assert notifications.send_due(db, mailer, now=later).sent == 2
        assert notifications.send_due(db, mailer, now=later + timedelta(hours=2)).sent == 0
        assert sorted(m["To"] for m in server.messages()) == ["dev@example.com", "ops@example.com"]


def test_a_message_refused_for_three_days_is_given_up_and_logged(db, settings, tmp_path):
    config = _setup(db)
    notifications.collect(db, settings)
    _ended(db, config, "failed")
    notifications.collect(db, settings)
    with smtp_server(tmp_path, started=False) as server:
        mailer = SmtpMailer.from_url(server.url, "backups@example.com", timeout=2)
        report = notifications.send_due(db, mailer, now=utcnow() + timedelta(days=3, minutes=1))
    assert report.given_up == 2
    with db.transaction() as session:
        assert {m.state for m in MailOutbox(session).messages()} == {"failed"}


def test_smtp_urls_are_read_or_refused_with_the_setting_named():
    plain = SmtpMailer.from_url("smtp://127.0.0.1:2525", "a@example.com")
    assert (plain.host, plain.port, plain.tls, plain.username) == ("127.0.0.1", 2525, False, None)
    secure = SmtpMailer.from_url("smtps://me%40x.org:p%3Ass@mail.example.com", "a@example.com")
    assert (secure.port, secure.tls, secure.username, secure.password) == (
        465,
        True,
        "me@x.org",
        "p:ss",
    )
    with pytest.raises(ValueError, match="CLOUDBACKUP_SMTP_URL"):
        SmtpMailer.from_url("http://mail.example.com", "a@example.com")


def test_daily_and_weekly_summaries_are_sent_once_per_period(db, settings, tmp_path):
    from datetime import UTC, datetime

    from cloudbackup.domain.summaries import Recipient, Summaries, SummaryService
    from cloudbackup.domain.summary_mail import period_of, queue_summaries

    config = _setup(db)
    SummaryService(db).put(
        config.project_id,
        Summaries(daily=True, weekly=True, notifications=(Recipient("email", "boss@example.com"),)),
    )
    now = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)  # a Wednesday
    assert period_of("daily", now)[0] == "2026-12-01"
    assert period_of("weekly", now)[0] == "2026-W48"
    for state, hours_ago in (("completed", 20), ("failed", 30), ("completed", 200)):
        rows.backup(db, config.id, state=state, ended_time=now - timedelta(hours=hours_ago))

    assert queue_summaries(db, settings, now=now) == 2
    assert queue_summaries(db, settings, now=now + timedelta(hours=5)) == 0  # same periods
    with smtp_server(tmp_path) as server:
        sent = notifications.send_due(db, SmtpMailer.from_url(server.url, "b@example.com"))
        received = {m["Subject"]: m.get_payload(decode=True).decode() for m in server.messages()}
    assert sent.sent == 2
    daily = received["Daily backup summary 2026-12-01: 2 backups, 1 not clean"]
    assert "nightly on web-1: 1 completed, 1 failed" in daily
    # The weekly one covers Monday 23 to Sunday 29 November: only the backup of 200 h ago.
    weekly = received["Weekly backup summary 2026-W48: 1 backups, 0 not clean"]
    assert "nightly on web-1: 1 completed" in weekly
    # A new day is a new period.
    assert queue_summaries(db, settings, now=now + timedelta(days=1)) == 1
