"""What each run kind assembles its executor from: :class:`RunExecutor` (the worker's
``execute_*`` and ``claim_*`` of one kind), the values that fail a run whose executors kept
dying, and the error rows of the engine's per-file errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol

from sqlalchemy.orm import Session

from cloudbackup.domain.run_protocol import (
    Outcome,
    OwnedRun,
    RunClaim,
    claim_run,
    execute_run,
)
from cloudbackup.domain.run_states import StateT
from cloudbackup.domain.runs import ErrorT, RunKind, RunT
from cloudbackup.engine import FileError
from cloudbackup.settings import Settings
from cloudbackup.store.db import Database


@dataclass(frozen=True, slots=True)
class RunExecutor(Generic[RunT, ErrorT, StateT]):
    """One kind's executor: its claim (:func:`claim_run` with the kind's ``give_up`` values and
    ``instead_of_queuing`` rule) and its delivery (:func:`execute_run` with its runner class)."""

    kind: RunKind[RunT, ErrorT, StateT]
    runner: type[OwnedRun[RunT, ErrorT, StateT]]
    give_up: Callable[[RunT], dict[str, Any]]
    instead_of_queuing: Callable[[Session, RunT], StateT | None] = lambda _s, _r: None

    def claim(
        self, db: Database, settings: Settings, run_id: str
    ) -> RunClaim[RunT, ErrorT, StateT] | None:
        """Take the run if this delivery may (see :func:`claim_run`)."""
        return claim_run(
            self.kind,
            db,
            settings,
            run_id,
            give_up=self.give_up,
            instead_of_queuing=self.instead_of_queuing,
        )

    def execute(self, db: Database, settings: Settings, run_id: str) -> Outcome:
        """One delivery of the run: a final state, or why none (``noop``, ``busy``: another
        executor's run looks alive, ``handed_back``: this one is shutting down, ``lost``)."""
        return execute_run(
            self.kind,
            lambda: self.claim(db, settings, run_id),
            lambda claim: self.runner(db, settings, claim),
            settings,
        )


class _Attempted(Protocol):
    @property
    def attempts(self) -> int: ...


def file_error_columns(index: int, error: FileError) -> dict[str, Any]:
    """The columns of the error row for the engine's ``index``-th per-file error."""
    return {
        "index": index,
        "path": error.path,
        "type": error.type,
        "exception_code": error.code,
        "exception_description": error.description,
        "exception_details": error.details,
    }


def give_up_after_deaths(reason: str, noun: str) -> Callable[[_Attempted], dict[str, Any]]:
    """The failure values of a run whose executors stopped responding ``max_attempts`` times,
    telling the operator what to check (``noun``: "backup", "restore")."""

    def values(run: _Attempted) -> dict[str, Any]:
        return {
            "errors_reason": reason,
            "errors_diagnostics": (
                f"The worker running this {noun} stopped responding {run.attempts} "
                f"times; giving up. Check the worker logs, then start the {noun} again."
            ),
        }

    return values
