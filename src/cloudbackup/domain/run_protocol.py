"""The run protocol: what an executor does with every kind of run, whatever engine work it adds.

1. **Claim** (:func:`claim_run`): a compare-and-set on the state, so a second delivery does
   nothing. The claim's ``attempt`` is its fencing token: every later write first checks that
   the row's ``attempts`` is still this one, because a run whose executor stopped responding
   (stale heartbeat) is taken over with the next number, a bounded number of times, then failed.
2. **Enter** the progress states in order (:meth:`OwnedRun.enter`); a re-driven run may already
   be past one.
3. **Report** counters at least every ``progress_interval`` seconds (:meth:`OwnedRun.flush`;
   the heartbeat is beaten by a thread of its own, ``domain.run_heartbeat``); the same
   transaction reads the state back, which is how a stop request reaches the engine
   (:meth:`OwnedRun.should_stop`).
4. **Hand back** (:meth:`OwnedRun.hand_back`) when the executor shuts down: the heartbeat is
   cleared and the next delivery takes the run over at once without using up an attempt.
5. **Finish** (:meth:`OwnedRun.finish`) in a final state with the per-file errors.

Each step returns or raises an :class:`Outcome`-shaped answer, never a bare string. Hosted
workers speak this protocol through the database; a remote agent is one more executor.
Writes that find the database unreachable are retried for ``database_retry_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cloudbackup.domain.errors import Unavailable
from cloudbackup.domain.run_heartbeat import RunHeartbeat
from cloudbackup.domain.run_states import StateT
from cloudbackup.domain.runs import ErrorT, RunKind, RunT
from cloudbackup.engine import Stopped
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database
from cloudbackup.store.tables import as_utc, utcnow

log = logging.getLogger("cloudbackup.run")

PROGRESS_EVENT_SECONDS = 5.0
T = TypeVar("T")


class Outcome(StrEnum):
    """What one delivery of a run came to: the final state it reached, or why it reached none."""

    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    STOPPED = "stopped"
    SKIPPED = "skipped"
    PASSED = "passed"  # a restore drill's proof held
    NOOP = "noop"  # nothing to do: no such run, already final, or another delivery won
    BUSY = "busy"  # another executor's run looks alive: look again once its heartbeat could stale
    HANDED_BACK = "handed_back"  # this executor is shutting down: requeue for another one
    LOST = "lost"  # another executor took the run over; this one wrote nothing more
    FORWARDED = "forwarded"  # moved to its agent's own queue
    WAITING = "waiting"  # held back by a pause or a limit; a run that ends hands it on
    DELEGATED = "delegated"  # handed to its remote agent's channel; the agent reports the rest

    @classmethod
    def reached(cls, state: str | None) -> Outcome:
        """The outcome of a run found in ``state`` (a state that is no outcome: ``noop``)."""
        try:
            return cls(state or "")
        except ValueError:
            return cls.NOOP


def failure_message(noun: str, exc: Exception, reference: str) -> str:
    """The tenant's account of a failed run: what failed, what to do, what to tell the
    operator."""
    return (
        f"The {noun} failed on the worker ({type(exc).__name__}). Start it again; if it fails "
        f"again, give the operator reference {reference}: the worker log has the details."
    )


class RunIsAlive(Exception):
    """Another executor runs this run and its heartbeat is fresh: try again later."""


class LostOwnership(Exception):
    """Another executor took the run over (this one was presumed dead); stop without writing."""


class HandBack(Exception):
    """The executor is shutting down: give the run back so another one continues it."""


class RunStopRequested(Exception):
    """A stop request arrived before the engine could see it."""


# -- shutting down: the running run hands itself back -----------------------------------------

_hand_back = threading.Event()
_hand_back_since = 0.0
_running = threading.Event()
# A process still alive this long after a shutdown signal (a stray signal, not a shutdown)
# takes work again rather than handing every task back forever.
HAND_BACK_HOLD_SECONDS = 60.0


def request_hand_back() -> bool:
    """Ask this process's running run to hand itself back; False when none is running."""
    global _hand_back_since
    _hand_back_since = time.monotonic()
    _hand_back.set()
    return _running.is_set()


def _shutting_down() -> bool:
    if _hand_back.is_set() and time.monotonic() - _hand_back_since > HAND_BACK_HOLD_SECONDS:
        _hand_back.clear()
    return _hand_back.is_set()


def retrying(settings: Settings, what: str, write: Callable[[], T]) -> T:
    """Run ``write`` (one transaction), retrying while the database is unreachable."""
    deadline = time.monotonic() + settings.database_retry_seconds
    delay = 0.2
    while True:
        try:
            return write()
        except Unavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("database unreachable while %s, retrying in %.1f s: %s", what, delay, exc)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


# -- 1. the claim -----------------------------------------------------------------------------


@dataclass(slots=True)
class RunClaim(Generic[RunT, ErrorT, StateT]):
    """A run this executor now owns: ``attempt`` identifies it in every later write;
    ``resumed`` says an earlier owner may have done part of the work."""

    kind: RunKind[RunT, ErrorT, StateT]
    run: RunT
    attempt: int
    resumed: bool = False

    def check_owner(self, session: Session) -> None:
        """Raise :class:`LostOwnership` once another executor has taken the run over."""
        if self.kind.repository(session).attempts_of(self.run.id) != self.attempt:
            raise LostOwnership(self.run.id)


def claim_run(
    kind: RunKind[RunT, ErrorT, StateT],
    db: Database,
    settings: Settings,
    run_id: str,
    *,
    give_up: Callable[[RunT], dict[str, Any]],
    instead_of_queuing: Callable[[Session, RunT], StateT | None] = lambda _s, _r: None,
) -> RunClaim[RunT, ErrorT, StateT] | None:
    """Take the run if this delivery may: a new run is queued (unless ``instead_of_queuing``
    names the state it ends in), a stopped one ended, one handed back or whose executor died
    taken over (after ``max_attempts`` deaths, failed with ``give_up(run)``'s values).
    None when there is nothing to run; :class:`RunIsAlive` when its executor still runs it."""
    machine = kind.machine
    stopped = machine.states("stopped")
    with db.transaction() as session:
        repo = kind.repository(session)
        run = repo.get(run_id)
        if run is None:
            log.warning("%s %s does not exist; nothing to run", kind.name, run_id)
            return None
        state = machine.states(run.state)
        if state in machine.final:
            return None
        if state is machine.stop_requested and run.heartbeat_at is None:
            kind.move(session, run, stopped)  # stopped before any executor picked it up
            return None
        now = utcnow()
        if state in machine.starts:
            ending = instead_of_queuing(session, run)
            if ending is not None:
                kind.move(session, run, ending)
                return None
            attempt = run.attempts + 1
            queued = machine.states("queued")
            if not kind.move(session, run, queued, {"heartbeat_at": now, "attempts": attempt}):
                return None
            return RunClaim(kind, run, attempt)
        # Claimed before: a duplicate delivery, a re-drive of a run whose executor died, or a
        # run handed back by an executor that shut down (heartbeat cleared).
        heartbeat = run.heartbeat_at
        handed_back = heartbeat is None
        stale_before = now - timedelta(seconds=settings.heartbeat_timeout_seconds)
        if heartbeat is not None and as_utc(heartbeat) > stale_before:
            raise RunIsAlive(run.id)
        if state is machine.stop_requested:
            kind.move(session, run, stopped)
            return None
        if not handed_back and run.attempts >= settings.max_attempts:
            kind.move(session, run, machine.states("failed"), give_up(run))
            return None
        # A take-over increments the fencing token so a dead owner's writes fail; a handed-back
        # run's owner is gone for good, so it keeps its number (a shutdown is not a failure).
        attempt = run.attempts if handed_back else run.attempts + 1
        if not repo.update_where_state(
            run.id, [state], {"heartbeat_at": now, "attempts": attempt}, heartbeat_was=heartbeat
        ):
            return None
        run.attempts = attempt
        if handed_back:
            log.info("taking over %s %s, handed back by an executor", kind.name, run.id)
        else:
            log.warning(
                "re-driving %s %s (attempt %d) after its executor stopped responding",
                kind.name,
                run.id,
                attempt,
            )
        return RunClaim(kind, run, attempt, resumed=True)


# -- 2-5. the owned run -----------------------------------------------------------------------


class Progress(Protocol):
    """What every engine's progress report says about the bytes (for the progress event)."""

    @property
    def bytes_completed(self) -> int: ...

    @property
    def total_bytes(self) -> int: ...


class OwnedRun(Generic[RunT, ErrorT, StateT]):
    """The writes of a claimed run. A kind subclasses it with its engine work in :meth:`work`
    and says what its counters and failures look like; :meth:`run` maps every way the work can
    end to a final state or an :class:`Outcome`."""

    failed_reason: str = "run_failed"

    def __init__(
        self, db: Database, settings: Settings, claim: RunClaim[RunT, ErrorT, StateT]
    ) -> None:
        self.db = db
        self.settings = settings
        self.claim: RunClaim[RunT, ErrorT, StateT] = claim
        self.kind: RunKind[RunT, ErrorT, StateT] = claim.kind
        self.state: StateT = claim.kind.machine.states(claim.run.state)
        self.progress: Progress | None = None
        self._last_flush = 0.0
        self._last_event = 0.0
        self._stop_seen = False
        self._heartbeat: RunHeartbeat | None = None

    @property
    def run_id(self) -> str:
        run_id: str = self.claim.run.id
        return run_id

    # -- what a kind says ---------------------------------------------------------------------
    def work(self) -> Outcome:
        """The engine work between the claim and the final state."""
        raise NotImplementedError

    def counter_values(self) -> dict[str, Any]:
        """The run's counters as of the last progress report (written with every flush)."""
        return {}

    def stopped_values(self) -> dict[str, Any]:
        return self.counter_values()

    def failed_values(self, exc: Exception, reference: str) -> dict[str, Any]:
        """What a tenant is told of a failure: its kind and a reference, never the exception's
        text (it may name the operator's paths, buckets or hosts; the log has it)."""
        return {
            **self.counter_values(),
            "errors_reason": self.failed_reason,
            "errors_diagnostics": failure_message(self.kind.name, exc, reference),
        }

    # -- the protocol -------------------------------------------------------------------------
    def run(self) -> Outcome:
        kind = self.kind
        self._heartbeat = RunHeartbeat(self)
        self._heartbeat.start()
        try:
            return self.work()
        except (RunStopRequested, Stopped):
            return self.finish(kind.machine.states("stopped"), self.stopped_values())
        except LostOwnership:
            log.warning("%s %s was taken over by another executor", kind.name, self.run_id)
            return Outcome.LOST
        except HandBack:
            return self.hand_back()
        except Exception as exc:  # the run failed: record why, so it is never left running
            reference = uuid.uuid4().hex[:12]
            log.exception("%s %s failed (reference %s)", kind.name, self.run_id, reference)
            failed = kind.machine.states("failed")
            return self.finish(failed, self.failed_values(exc, reference))
        finally:
            self._stop_heartbeat()

    def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()

    def enter(self, target: StateT) -> None:
        """Move to the progress state ``target`` (the first one after ``queued`` records the
        start time). A re-driven run may be past it already; a pending stop ends the run."""
        machine = self.kind.machine
        order = [state for state in machine.states if state in machine.running]
        if self.state in order and order.index(target) <= order.index(self.state):
            return
        if self.state is machine.stop_requested:
            raise RunStopRequested(self.run_id)
        run = self.claim.run

        def write() -> None:
            with self.db.transaction() as session:
                self.claim.check_owner(session)
                values: dict[str, Any] = {"heartbeat_at": utcnow()}
                if run.started_time is None:
                    values["started_time"] = utcnow()
                if self.kind.move(session, run, target, values, attempt=self.claim.attempt):
                    return
                self.claim.check_owner(session)
                state = machine.parse(self.kind.repository(session).state_of(run.id) or "")
                if state is machine.stop_requested:
                    self._stop_seen = True
                    raise RunStopRequested(run.id)
                if state not in order or order.index(state) < order.index(target):
                    raise RuntimeError(f"{self.kind.name} {run.id} is {state}, cannot run")

        self.check_hand_back()
        retrying(self.settings, f"recording {target} of {self.kind.name} {run.id}", write)
        self.state = target
        self._last_flush = time.monotonic()

    def check_hand_back(self) -> None:
        """Raise :class:`HandBack` once this executor has been asked to shut down, and
        :class:`LostOwnership` once its heartbeat found the run taken over."""
        if self._heartbeat is not None and self._heartbeat.lost:
            raise LostOwnership(self.run_id)
        if _hand_back.is_set():
            raise HandBack(self.run_id)

    def report(self, progress: Progress) -> None:
        """The engine's progress callback: flush when the interval is up."""
        self.progress = progress
        self.check_hand_back()
        if time.monotonic() - self._last_flush >= self.settings.progress_interval:
            self.flush()

    def should_stop(self) -> bool:
        """The engine's stop check: whether a stop request has been seen (flushing when due)."""
        self.check_hand_back()
        if time.monotonic() - self._last_flush >= self.settings.progress_interval:
            self.flush()
        return self._stop_seen

    def flush(self) -> None:
        """Write the counters and read the state back (how a stop request reaches the engine);
        every few seconds also a progress event. The heartbeat is :class:`RunHeartbeat`'s."""
        kind, run = self.kind, self.claim.run
        self._last_flush = time.monotonic()
        stop = kind.machine.stop_requested
        try:
            with self.db.transaction() as session:
                repo = kind.repository(session)
                # Fenced by the attempt: only a write that found nothing to change asks why.
                if not repo.update_where_state(
                    run.id,
                    kind.machine.running | {stop},
                    self.counter_values(),
                    attempt=self.claim.attempt,
                ):
                    self.claim.check_owner(session)
                self._stop_seen = repo.state_of(run.id) == stop
                self._progress_event(session)
        except (Unavailable, sa.exc.OperationalError) as exc:
            # Keep going: the database may be back before our heartbeat goes stale.
            log.warning("could not record progress of %s %s: %s", kind.name, run.id, exc)

    def _progress_event(self, session: Session) -> None:
        p = self.progress
        if p is None or time.monotonic() - self._last_event < PROGRESS_EVENT_SECONDS:
            return
        self._last_event = time.monotonic()
        self.kind.record_event(
            session,
            self.claim.run,
            f"{self.kind.name}_progress",
            extra={
                "bytes_completed": p.bytes_completed,
                "bytes_remaining": max(p.total_bytes - p.bytes_completed, 0),
                "total_bytes": p.total_bytes,
            },
        )

    def hand_back(self) -> Outcome:
        """Clear the heartbeat so the next delivery takes the run over at once."""
        self._stop_heartbeat()  # no beat may land after the clearing
        kind, run = self.kind, self.claim.run
        try:
            with self.db.transaction() as session:
                self.claim.check_owner(session)
                kind.repository(session).update_where_state(
                    run.id,
                    kind.machine.running | {kind.machine.stop_requested},
                    {"heartbeat_at": None},
                    attempt=self.claim.attempt,
                )
        except (Unavailable, LostOwnership) as exc:
            # Nothing to hand over (taken over already), or the database is away: the stale
            # heartbeat then lets the sweeper re-drive it.
            log.warning("%s %s could not be handed back cleanly: %s", kind.name, run.id, exc)
        else:
            log.info("%s %s handed back: this executor is shutting down", kind.name, run.id)
        return Outcome.HANDED_BACK

    def complete(
        self, values: dict[str, Any], errors: list[ErrorT], reason: str, diagnostics: str
    ) -> Outcome:
        """End ``completed``, or ``completed_with_errors`` (with ``reason`` and ``diagnostics``)
        when the engine reported per-file ``errors``."""
        machine = self.kind.machine
        if not errors:
            return self.finish(machine.states("completed"), values)
        reported = {
            "errors_count": len(errors),
            "errors_reason": reason,
            "errors_diagnostics": diagnostics,
        }
        return self.finish(machine.states("completed_with_errors"), values | reported, errors)

    def finish(
        self, target: StateT, values: dict[str, Any], errors: list[ErrorT] | None = None
    ) -> Outcome:
        """Move the run to its final ``target`` with its per-file ``errors``."""
        self._stop_heartbeat()
        kind, run = self.kind, self.claim.run
        values = dict(values)

        def write() -> str | None:
            values["heartbeat_at"] = utcnow()
            with self.db.transaction() as session:
                self.claim.check_owner(session)
                if not kind.move(session, run, target, values, attempt=self.claim.attempt):
                    self.claim.check_owner(session)
                    state: str | None = kind.repository(session).state_of(run.id)
                    return state
                if errors:
                    # Fresh rows on every try: a retried transaction must not reuse the last's.
                    rows = [type(e)(**e.model_dump()) for e in errors]
                    kind.repository(session).replace_errors(run.id, rows)
            return None

        try:
            other = retrying(self.settings, f"ending {kind.name} {run.id}", write)
        except LostOwnership:
            log.warning("%s %s was taken over by another executor", kind.name, run.id)
            return Outcome.LOST
        if other is not None:
            log.warning("%s %s could not move to %s from %s", kind.name, run.id, target, other)
            return Outcome.reached(other)
        log.info("%s %s ended %s", kind.name, run.id, target)
        return Outcome(target.value)


def execute_run(
    kind: RunKind[RunT, ErrorT, StateT],
    claim: Callable[[], RunClaim[RunT, ErrorT, StateT] | None],
    runner: Callable[[RunClaim[RunT, ErrorT, StateT]], OwnedRun[RunT, ErrorT, StateT]],
    settings: Settings,
) -> Outcome:
    """One delivery of a run: claim it if this executor may take work, then run it."""
    if _shutting_down():
        return Outcome.HANDED_BACK  # an executor on its way out claims nothing new
    _running.set()  # from here a shutdown signal is answered by handing the run back
    try:
        claimed = retrying(settings, f"claiming {kind.name}", claim)
        if claimed is None:
            return Outcome.NOOP
        return runner(claimed).run()
    except RunIsAlive:
        return Outcome.BUSY
    finally:
        _running.clear()
