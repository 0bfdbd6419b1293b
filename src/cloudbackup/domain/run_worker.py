"""What a worker does the same way for restores and cleanups (``restore_run``, ``cleanup_run``),
after ``backup_run``: claim a run, prove on every write that it still owns it, keep its heartbeat
and counters fresh, finish it, and, for the sweeper, re-publish the runs nobody is running.

The claim is a compare-and-set on the state (a second delivery does nothing); every later write
first checks that the row's ``attempts`` is still this worker's, because a run whose worker
stopped responding is taken over (a bounded number of times, then failed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.domain.backup_run import LostOwnership, RunIsAlive
from cloudbackup.domain.dispatch import Dispatcher
from cloudbackup.domain.errors import Unavailable
from cloudbackup.domain.runs import ErrorT, RunKind, RunT, StateT, transition
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.tables import as_utc, utcnow

log = logging.getLogger("cloudbackup.run")


@dataclass(slots=True)
class RunClaim(Generic[RunT, ErrorT, StateT]):
    """A run this worker now owns: ``attempt`` identifies it in every later write."""

    kind: RunKind[RunT, ErrorT, StateT]
    run: RunT
    attempt: int

    def check_owner(self, session: Session) -> None:
        """Raise :class:`LostOwnership` once another worker has taken the run over."""
        if self.kind.repository(session).attempts_of(self.run.id) != self.attempt:
            raise LostOwnership(self.run.id)


def claim_run(
    kind: RunKind[RunT, ErrorT, StateT],
    db: Database,
    settings: Settings,
    run_id: str,
    *,
    give_up: Callable[[RunT], dict[str, Any]],
) -> RunClaim[RunT, ErrorT, StateT] | None:
    """Take the run if this delivery may: a new run is queued, a stopped one ended, one whose
    worker died taken over (or, after ``max_attempts``, failed with ``give_up(run)``'s values).
    None when there is nothing to run; :class:`RunIsAlive` when its worker still runs it."""
    s = kind.states
    with db.transaction() as session:
        repo = kind.repository(session)
        run = repo.get(run_id)
        if run is None:
            log.warning("%s %s does not exist; nothing to run", kind.name, run_id)
            return None
        state = s(run.state)
        if state in kind.final_states:
            return None
        if state is s.STOP_REQUESTED and run.heartbeat_at is None:
            transition(kind, session, run, s.STOPPED)  # stopped before any worker picked it up
            return None
        now = utcnow()
        if state in kind.start_states:
            attempt = run.attempts + 1
            if not transition(
                kind, session, run, s.QUEUED, {"heartbeat_at": now, "attempts": attempt}
            ):
                return None
            return RunClaim(kind, run, attempt)
        # Claimed before: a duplicate delivery, or a re-drive of a run whose worker died.
        stale_before = now - timedelta(seconds=settings.heartbeat_timeout_seconds)
        if run.heartbeat_at is not None and as_utc(run.heartbeat_at) > stale_before:
            raise RunIsAlive(run.id)
        if state is s.STOP_REQUESTED:
            transition(kind, session, run, s.STOPPED)
            return None
        if run.attempts >= settings.max_attempts:
            transition(kind, session, run, s.FAILED, give_up(run))
            return None
        attempt = run.attempts + 1
        if not repo.update_where_state(
            run.id,
            [state],
            {"heartbeat_at": now, "attempts": attempt},
            heartbeat_was=run.heartbeat_at,
        ):
            return None
        run.attempts = attempt
        log.warning(
            "re-driving %s %s (attempt %d) after its worker stopped responding",
            kind.name,
            run.id,
            attempt,
        )
        return RunClaim(kind, run, attempt)


@dataclass
class OwnedRun(Generic[RunT, ErrorT, StateT]):
    """The writes of a run a worker has claimed; ``restore_run`` and ``cleanup_run`` add the
    engine work in between."""

    db: Database
    settings: Settings
    claim: RunClaim[RunT, ErrorT, StateT]
    _last_flush: float = 0.0
    _stop_seen: bool = False

    def _write_progress(
        self, values: dict[str, Any], also: Callable[[Session], None] | None = None
    ) -> None:
        """Write ``values`` and a fresh heartbeat, and read the state back (how a stop request
        reaches the engine); ``also`` writes more in the same transaction."""
        kind, run = self.claim.kind, self.claim.run
        self._last_flush = time.monotonic()
        values = {**values, "heartbeat_at": utcnow()}
        stop = kind.states.STOP_REQUESTED
        try:
            with self.db.transaction() as session:
                repo = kind.repository(session)
                self.claim.check_owner(session)
                repo.update_where_state(run.id, kind.running_states | {stop}, values)
                self._stop_seen = repo.state_of(run.id) == stop
                if also is not None:
                    also(session)
        except (Unavailable, sa.exc.OperationalError) as exc:
            # Keep going: the database may be back before our heartbeat goes stale.
            log.warning("could not record progress of %s %s: %s", kind.name, run.id, exc)

    def _finish(
        self, target: StateT, values: dict[str, Any], errors: list[ErrorT] | None = None
    ) -> str:
        """Move the run to its final ``target`` with its per-file ``errors``; the state reached."""
        kind, run = self.claim.kind, self.claim.run
        values = dict(values)
        values["heartbeat_at"] = utcnow()
        with self.db.transaction() as session:
            self.claim.check_owner(session)
            if not transition(kind, session, run, target, values):
                state = kind.repository(session).state_of(run.id)
                log.warning("%s %s could not move to %s from %s", kind.name, run.id, target, state)
                return str(state)
            if errors:
                kind.repository(session).replace_errors(run.id, errors)
        log.info("%s %s ended %s", kind.name, run.id, target)
        return str(target)


@dataclass(frozen=True, slots=True)
class SweepReport:
    republished: int
    redriven: int


def sweep_runs(
    kind: RunKind[RunT, ErrorT, StateT],
    db: Database,
    dispatcher: Dispatcher,
    settings: Settings,
    now: datetime | None = None,
) -> SweepReport:
    """Re-publish runs no worker has claimed (backing off 30 s, 30 s, 60 s, ...) and those
    whose worker died (stale heartbeat); the claim decides whether to take them over or fail."""
    now = now or utcnow()
    wait = timedelta(seconds=settings.sweep_after_seconds)
    stop = kind.states.STOP_REQUESTED
    with db.transaction() as session:
        repo = kind.repository(session)
        waiting = repo.waiting_starts([*kind.start_states, stop], now - wait)
        stale = repo.stale_runs(
            now - timedelta(seconds=settings.heartbeat_timeout_seconds),
            [*kind.running_states, stop],
        )
    due = [
        (run_id, agent_id)
        for run_id, agent_id, created, published in waiting
        if published is None
        or now - as_utc(published) >= max(wait, as_utc(published) - as_utc(created))
    ]
    published = [
        run_id
        for run_id, agent_id in due
        if dispatcher.publish(kind.name, run_id, agent_id=agent_id)
    ]
    if published:
        with db.transaction() as session:
            kind.repository(session).mark_published(published)
        log.info("re-published %d %ss waiting for a worker", len(published), kind.name)
    redriven = [
        run_id
        for run_id, agent_id in stale
        if dispatcher.publish(kind.name, run_id, agent_id=agent_id)
    ]
    if redriven:
        log.warning("re-drove %d %ss whose worker stopped responding", len(redriven), kind.name)
    return SweepReport(republished=len(published), redriven=len(redriven))
