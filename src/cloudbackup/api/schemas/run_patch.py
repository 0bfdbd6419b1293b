"""One JSON Patch parser for the run resources (B4, R4, C4).

A :class:`RunPatch` says what one kind's PATCH may write: its state machine (a PATCH may set
any state an agent or a user may set, never a start), its counters, its ``/errors`` shape and
any path of its own (a backup's ``/snapshot_id``, a cleanup's ``/snapshot_ids``). Unknown paths,
wrong types, negative counters and bad times are a 400 that changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from litestar import Request

from cloudbackup.api.body import convert_value, decode_patch
from cloudbackup.api.schemas.times import parse_iso
from cloudbackup.domain.errors import InvalidInput
from cloudbackup.domain.run_states import StateMachine
from cloudbackup.domain.runs import RunUpdate

UpdateT = TypeVar("UpdateT", bound=RunUpdate[Any, Any])
TIME_PATHS = frozenset({"/started_time", "/ended_time"})
# The widest numbers the columns hold: counters are BIGINT, counts, indexes and snapshot ids
# INTEGER. A wider one is a 400, never a database error.
MAX_COUNTER = 2**63 - 1
MAX_INT32 = 2**31 - 1


def invalid(problem: str) -> InvalidInput:
    return InvalidInput("Validation failed.", [problem])


def bounded_int(value: Any, path: str, *, low: int = 0, high: int = MAX_INT32) -> int:
    """``value`` as an integer from ``low`` to ``high`` (400 otherwise)."""
    number = convert_value(value, int, path)
    if number < low:
        raise invalid(
            f"{path} must not be less than {low}." if low else f"{path} must not be negative."
        )
    if number > high:
        raise invalid(f"{path} may be at most {high}.")
    return number


ReportedT = TypeVar("ReportedT")


@dataclass(frozen=True, slots=True)
class ErrorsValue(Generic[ReportedT]):
    """How a PATCH's ``/errors`` value reads: the msgspec struct it decodes to, and what the
    domain makes of that."""

    struct: type[ReportedT]
    to_domain: Callable[[ReportedT], Any]


@dataclass(frozen=True, slots=True)
class RunPatch(Generic[UpdateT]):
    """What one kind of run's PATCH may write, and how each value becomes its update."""

    machine: StateMachine[Any]
    new_update: Callable[[], UpdateT]
    counters: frozenset[str]
    errors: ErrorsValue[Any]
    own_paths: Mapping[str, Callable[[UpdateT, Any, str], None]] = field(default_factory=dict)

    @property
    def paths(self) -> frozenset[str]:
        return self.counters | TIME_PATHS | {"/state", "/errors", *self.own_paths}

    def parse(self, request: Request[Any, Any, Any], body: bytes) -> UpdateT:
        """The update a JSON Patch body asks for (400 on anything it may not write)."""
        update = self.new_update()
        paths = self.paths
        for op in decode_patch(request, body, frozenset({"replace", "add"})):
            path = op.path
            if path not in paths:
                writable = ", ".join(sorted(paths))
                raise invalid(f"{path} cannot be changed; writable: {writable}.")
            if path == "/state":
                update.state = self._state(convert_value(op.value, str, path))
            elif path in TIME_PATHS:
                setattr(update, path[1:], _moment(convert_value(op.value, str, path), path))
            elif path == "/errors":
                reported = convert_value(op.value, self.errors.struct, path)
                update.errors = self.errors.to_domain(reported)
                bounded_int(update.errors.count, "/errors/count")
                for item in update.errors.items:
                    bounded_int(item.index, "/errors/list/index")
            elif path in self.counters:
                update.counters[path[1:]] = bounded_int(op.value, path, high=MAX_COUNTER)
            else:
                self.own_paths[path](update, op.value, path)
        return update

    def _state(self, value: str) -> Any:
        machine = self.machine
        state = machine.parse(value)
        if state is None or state not in machine.agent_settable | machine.user_settable:
            raise invalid(f"/state cannot be set to {value!r}.")
        return state


def _moment(text: str, path: str) -> Any:
    try:
        return parse_iso(text)
    except ValueError as exc:
        raise invalid(f"{path}: {text!r} is not an ISO 8601 time.") from exc
