"""The run model every kind shares, tested once for each kind: the PATCH's stop, the claim with
its fencing token, hand-back and take-over, the sweeper, and the outcomes of a delivery."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa

from cloudbackup.domain.backup_run import execute_backup
from cloudbackup.domain.backups import BACKUP_RUNS, BackupService, BackupUpdate
from cloudbackup.domain.cleanup_run import execute_cleanup
from cloudbackup.domain.cleanups import CLEANUP_RUNS, CleanupService, CleanupUpdate
from cloudbackup.domain.restore_run import execute_restore
from cloudbackup.domain.restores import RESTORE_RUNS, RestoreService, RestoreUpdate
from cloudbackup.domain.run_protocol import (
    LostOwnership,
    Outcome,
    OwnedRun,
    RunIsAlive,
    claim_run,
)
from cloudbackup.domain.runs import RunKind
from cloudbackup.domain.sweeper import sweep, sweep_runs
from cloudbackup.store.tables import utcnow
from factories import rows
from factories.runs import Recorder


@dataclass(frozen=True)
class Kind:
    """One kind of run, as these tests make and drive it."""

    name: str
    runs: RunKind[Any, Any, Any]
    service: type[Any]
    update: type[Any]
    counter: str  # a counter the kind's agent reports
    execute: Any


KINDS = [
    pytest.param(
        Kind("backup", BACKUP_RUNS, BackupService, BackupUpdate, "files_backed_up", execute_backup),
        id="backup",
    ),
    pytest.param(
        Kind(
            "restore",
            RESTORE_RUNS,
            RestoreService,
            RestoreUpdate,
            "files_restored",
            execute_restore,
        ),
        id="restore",
    ),
    pytest.param(
        Kind(
            "cleanup", CLEANUP_RUNS, CleanupService, CleanupUpdate, "bytes_before", execute_cleanup
        ),
        id="cleanup",
    ),
]


def _make(db, kind: Kind, state: str, **overrides: Any) -> tuple[Any, str]:
    """A run of ``kind`` in ``state``, and the id of the agent that reports it."""
    agent = rows.agent(db)
    if kind.name == "cleanup":
        return rows.cleanup(db, agent, state=state, **overrides), agent.id
    config = rows.configuration(db, agent)
    if kind.name == "backup":
        return rows.backup(db, config.id, state=state, **overrides), agent.id
    backup = rows.backup(db, config.id, restorable=True, snapshot_id=1)
    return rows.restore(db, backup.id, agent, state=state, **overrides), agent.id


def _row(db, kind: Kind, run_id: str) -> Any:
    with db.transaction() as session:
        return kind.runs.repository(session).get(run_id)


def _give_up(_: Any) -> dict[str, Any]:
    return {"errors_reason": "gave_up"}


@pytest.mark.parametrize("kind", KINDS)
def test_a_stop_reported_with_counters_keeps_the_counters(db, kind: Kind):
    run, agent_id = _make(db, kind, "in_progress", heartbeat_at=utcnow(), attempts=1)
    update = kind.update(state=kind.runs.machine.stop_requested, counters={kind.counter: 7})
    kind.service(db).update(run.project_id, run.id, update, agent_id)
    row = _row(db, kind, run.id)
    assert row.state == "stop_requested"
    assert getattr(row, kind.counter) == 7


@pytest.mark.parametrize("kind", KINDS)
def test_a_stop_of_a_run_nobody_claimed_ends_it_at_once(db, kind: Kind):
    run, _ = _make(db, kind, "start_requested")
    update = kind.update(state=kind.runs.machine.stop_requested)
    kind.service(db).update(run.project_id, run.id, update, None)
    assert _row(db, kind, run.id).state == "stopped"


@pytest.mark.parametrize("kind", KINDS)
def test_a_stop_of_a_claimed_run_waits_for_its_executor(db, kind: Kind):
    run, _ = _make(db, kind, "queued", heartbeat_at=utcnow(), attempts=1)
    update = kind.update(state=kind.runs.machine.stop_requested)
    kind.service(db).update(run.project_id, run.id, update, None)
    assert _row(db, kind, run.id).state == "stop_requested"


@pytest.mark.parametrize("kind", KINDS)
def test_progress_from_anyone_but_the_runs_agent_is_refused_for_every_kind(db, kind: Kind):
    from cloudbackup.domain.errors import Forbidden

    run, _ = _make(db, kind, "in_progress", heartbeat_at=utcnow(), attempts=1)
    with pytest.raises(Forbidden):
        kind.service(db).update(
            run.project_id, run.id, kind.update(counters={kind.counter: 1}), "another-agent"
        )
    assert getattr(_row(db, kind, run.id), kind.counter) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_handed_back_run_is_taken_over_without_using_an_attempt(db, settings, kind: Kind):
    run, _ = _make(db, kind, "in_progress", heartbeat_at=None, attempts=settings.max_attempts)
    claim = claim_run(kind.runs, db, settings, run.id, give_up=_give_up)
    assert claim is not None
    assert claim.attempt == settings.max_attempts  # a shutdown is not a failure
    assert claim.resumed
    assert _row(db, kind, run.id).heartbeat_at is not None


@pytest.mark.parametrize("kind", KINDS)
def test_a_dead_executors_run_is_taken_over_with_the_next_fencing_token(db, settings, kind: Kind):
    fresh, _ = _make(db, kind, "in_progress", heartbeat_at=utcnow(), attempts=1)
    with pytest.raises(RunIsAlive):
        claim_run(kind.runs, db, settings, fresh.id, give_up=_give_up)
    stale = utcnow() - timedelta(seconds=settings.heartbeat_timeout_seconds + 5)
    dead, _ = _make(db, kind, "in_progress", heartbeat_at=stale, attempts=1)
    claim = claim_run(kind.runs, db, settings, dead.id, give_up=_give_up)
    assert claim is not None and claim.attempt == 2 and claim.resumed
    with db.transaction() as session, pytest.raises(Exception, match=dead.id):
        # The old owner (attempt 1) finds it lost on its next write.
        type(claim)(kind.runs, claim.run, 1).check_owner(session)


@pytest.mark.parametrize("kind", KINDS)
def test_after_max_attempts_a_dead_run_fails_with_a_reason(db, settings, kind: Kind):
    stale = utcnow() - timedelta(seconds=settings.heartbeat_timeout_seconds + 5)
    run, _ = _make(db, kind, "in_progress", heartbeat_at=stale, attempts=settings.max_attempts)
    assert claim_run(kind.runs, db, settings, run.id, give_up=_give_up) is None
    row = _row(db, kind, run.id)
    assert row.state == "failed" and row.errors_reason == "gave_up"


@pytest.mark.parametrize("kind", KINDS)
def test_the_sweeper_requeues_handed_back_runs_of_every_kind(db, settings, kind: Kind):
    run, _ = _make(db, kind, "in_progress", heartbeat_at=None, attempts=1)
    recorder = Recorder()
    assert sweep_runs(kind.runs, db, recorder, settings).handed_back == 0  # just handed back
    with db.transaction() as session:
        table = kind.runs.repository(session).table
        old = utcnow() - timedelta(seconds=settings.sweep_after_seconds + 5)
        session.execute(sa.update(table).where(table.c.id == run.id).values(updated_at=old))
    report = sweep(db, recorder, settings)
    assert report.handed_back == 1
    assert getattr(report, f"{kind.name}s").handed_back == 1
    assert recorder.published[-1][:2] == (kind.name, run.id)


@pytest.mark.parametrize("kind", KINDS)
def test_a_delivery_of_a_final_or_unknown_run_is_a_noop(db, settings, kind: Kind):
    run, _ = _make(db, kind, "completed")
    assert kind.execute(db, settings, run.id) is Outcome.NOOP
    assert kind.execute(db, settings, "00000000-0000-0000-0000-000000000000") is Outcome.NOOP


def test_an_outcome_of_a_state_that_is_none_is_a_noop():
    assert Outcome.reached("stopped") is Outcome.STOPPED
    assert Outcome.reached("in_progress") is Outcome.NOOP
    assert Outcome.reached(None) is Outcome.NOOP


# -- the heartbeat thread and the fencing token -------------------------------------------------


class _Quiet(OwnedRun):
    """A run whose engine makes no callback for ``quiet`` seconds, then asks for stops."""

    quiet = 0.0
    checks = 0
    enter_first = False

    def work(self) -> Outcome:
        if self.enter_first:
            self.enter(self.kind.machine.states("in_progress"))
        time.sleep(self.quiet)
        for _ in range(self.checks):
            self.should_stop()
            time.sleep(0.05)
        return self.finish(self.kind.machine.states("completed"), {})


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_whose_engine_is_quiet_keeps_a_fresh_heartbeat(db, settings, kind: Kind):
    quick = msgspec.structs.replace(settings, heartbeat_timeout_seconds=1, progress_interval=0.2)
    run, _ = _make(db, kind, "start_requested")
    claim = claim_run(kind.runs, db, quick, run.id, give_up=_give_up)
    assert claim is not None
    owned = _Quiet(db, quick, claim)
    owned.enter_first = True
    owned.quiet = 2.5  # 2.5 heartbeat timeouts without a single callback
    seen_alive: list[bool] = []

    def another_delivery() -> None:
        time.sleep(2.0)
        try:
            claim_run(kind.runs, db, quick, run.id, give_up=_give_up)
        except RunIsAlive:
            seen_alive.append(True)
        else:
            seen_alive.append(False)

    other = threading.Thread(target=another_delivery)
    other.start()
    assert owned.run() is Outcome.COMPLETED
    other.join()
    assert seen_alive == [True]  # nobody took the live run over


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_taken_over_meanwhile_writes_nothing_more(db, settings, kind: Kind):
    quick = msgspec.structs.replace(settings, progress_interval=0.2)
    run, _ = _make(db, kind, "start_requested")
    claim = claim_run(kind.runs, db, quick, run.id, give_up=_give_up)
    assert claim is not None
    owned = _Quiet(db, quick, claim)
    owned.checks = 60  # three seconds of stop checks
    with db.transaction() as session:  # another executor took it over (its next attempt)
        table = kind.runs.repository(session).table
        session.execute(
            sa.update(table).where(table.c.id == run.id).values(attempts=claim.attempt + 1)
        )
    assert owned.run() is Outcome.LOST
    assert _row(db, kind, run.id).state == "queued"  # the old owner did not finish it


@pytest.mark.parametrize("kind", KINDS)
def test_every_executor_write_is_fenced_by_the_attempt(db, kind: Kind):
    run, _ = _make(db, kind, "in_progress", heartbeat_at=utcnow(), attempts=2)
    with db.transaction() as session:
        repo = kind.runs.repository(session)
        assert not repo.update_where_state(
            run.id, ["in_progress"], {"heartbeat_at": None}, attempt=1
        )
        assert not repo.compare_and_set(run.id, ["in_progress"], "failed", attempt=1)
        assert repo.update_where_state(run.id, ["in_progress"], {"heartbeat_at": None}, attempt=2)
    row = _row(db, kind, run.id)
    assert row.state == "in_progress" and row.heartbeat_at is None


class _Failing(OwnedRun):
    def work(self) -> Outcome:
        raise RuntimeError("cannot reach s3://operator-bucket/keys on 10.0.0.7")


@pytest.mark.parametrize("kind", KINDS)
def test_a_failure_tells_the_tenant_a_reference_and_the_log_the_detail(
    db, settings, kind: Kind, caplog
):
    run, _ = _make(db, kind, "start_requested")
    claim = claim_run(kind.runs, db, settings, run.id, give_up=_give_up)
    assert claim is not None
    assert _Failing(db, settings, claim).run() is Outcome.FAILED
    row = _row(db, kind, run.id)
    told = f"{row.errors_reason} {row.errors_diagnostics}"
    assert "operator-bucket" not in told and "10.0.0.7" not in told
    assert "RuntimeError" in told
    reference = told.split("reference ")[1][:12]
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert logged and "operator-bucket" in str(logged[0].exc_info[1])


class _Counting(OwnedRun):
    """A run whose counter is a fixed value, flushed by hand."""

    def __init__(self, *args: Any, counter: str) -> None:
        super().__init__(*args)
        self.counter = counter

    def counter_values(self) -> dict[str, Any]:
        return {self.counter: 5}


def _statements(db) -> tuple[list[str], Any]:
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    return seen, record


@pytest.mark.parametrize("kind", KINDS)
def test_a_flush_writes_the_counters_once_and_leaves_the_heartbeat_to_its_thread(
    db, settings, kind: Kind
):
    """One fenced UPDATE of the counters and one read of the state: no separate read of the
    owner (the UPDATE is fenced by the attempt) and no heartbeat (RunHeartbeat beats it)."""
    run, _ = _make(db, kind, "start_requested")
    claim = claim_run(kind.runs, db, settings, run.id, give_up=_give_up)
    assert claim is not None
    owned = _Counting(db, settings, claim, counter=kind.counter)
    owned.enter(kind.runs.machine.states("in_progress"))
    beaten = _row(db, kind, run.id).heartbeat_at
    seen, record = _statements(db)
    try:
        owned.flush()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    row = _row(db, kind, run.id)
    assert getattr(row, kind.counter) == 5
    assert row.heartbeat_at == beaten
    assert not any("heartbeat_at" in statement for statement in seen)
    reads = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 1 and "attempts" not in reads[0].split("FROM")[0]


@pytest.mark.parametrize("kind", KINDS)
def test_a_flush_of_a_run_taken_over_raises_lost_ownership(db, settings, kind: Kind):
    run, _ = _make(db, kind, "start_requested")
    claim = claim_run(kind.runs, db, settings, run.id, give_up=_give_up)
    assert claim is not None
    owned = _Counting(db, settings, claim, counter=kind.counter)
    owned.enter(kind.runs.machine.states("in_progress"))
    with db.transaction() as session:  # another executor took it over (its next attempt)
        table = kind.runs.repository(session).table
        session.execute(
            sa.update(table).where(table.c.id == run.id).values(attempts=claim.attempt + 1)
        )
    with pytest.raises(LostOwnership):
        owned.flush()
    assert getattr(_row(db, kind, run.id), kind.counter) == 0
